// Package export writes muninn's prefix lists and effective views in the
// formats of the tools that consume them: firewall and proxy list files
// (pfSense/OPNsense URL tables, nginx geo, HAProxy maps, ipset, nftables,
// MikroTik RouterOS), the MaxMind DB format, Zeek intel and Suricata
// reputation files. It only formats: what goes in comes from the index,
// the resolver and the render hub, through the API handlers.
package export

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Format is a prefix list file format (the contract's PrefixFormat: see
// openapi.yaml for what each looks like).
type Format string

// The prefix list formats.
const (
	// Txt is one CIDR a line and nothing else (no comments).
	Txt Format = "txt"
	// Plain is a pfSense/OPNsense "URL Table (IPs)" file: `#` comment lines,
	// then one CIDR a line.
	Plain Format = "plain"
	// Nginx is an include for an nginx `geo` block: lines `CIDR 1;`
	// (ngx_http_geo_module: "address value;").
	Nginx Format = "nginx"
	// HAProxy is a map file: lines `CIDR NAME`, for map_ip() or `-M -f`.
	HAProxy Format = "haproxy"
	// IPSet is an `ipset restore` file filling sets muninn-KIND-NAME-4 and
	// -6 (SetNames).
	IPSet Format = "ipset"
	// Nft is an `nft -f` file filling interval sets muninn_KIND_NAME_4 and
	// _6 in table inet muninn_export (SetNames; not the bouncer's table
	// inet muninn, which the bouncer replaces whole).
	Nft Format = "nft"
	// MikroTik is a RouterOS script filling address list muninn-KIND-NAME
	// (SetNames).
	MikroTik Format = "mikrotik"
)

// Formats lists the text formats WritePrefixes writes.
var Formats = []Format{Txt, Plain, Nginx, HAProxy, IPSet, Nft, MikroTik}

// List is a prefix list to write: its kind (deny, allow or a named list:
// part of the set names, so the three never fill each other's sets), its name (a ruleset or list name, as the
// contract's ObjectName: [A-Za-z0-9][A-Za-z0-9_-]*), comment lines (written
// where the format has comments) and its prefixes, IPv4 and IPv6 in address
// order.
//
// Family 4 or 6 says the list holds only that family (a ?family= answer):
// the set formats (ipset, nft, MikroTik) then create, flush and fill only
// that family's set, so loading the IPv6 answer never empties the IPv4 set
// an earlier load filled. 0 means both.
type List struct {
	Kind     Kind
	Name     string
	Comments []string
	V4, V6   []netip.Prefix
	Family   int
}

// holds reports whether l's answer covers family f (4 or 6).
func (l List) holds(f int) bool { return l.Family == 0 || l.Family == f }

// Kind is what a prefix list is: a ruleset's deny list, its allow list
// (the complement), or a named list. Set names carry it, so a ruleset and a
// list of one name, or a deny and an allow list, never share a set.
type Kind string

// The kinds of prefix list.
const (
	KindDeny  Kind = "deny"
	KindAllow Kind = "allow"
	KindList  Kind = "list"
)

// Name length limits of the set formats, in bytes without the NUL.
const (
	// IPSetNameMax: IPSET_MAXNAMELEN is 32 with the NUL (linux/netfilter/ipset/ip_set.h).
	IPSetNameMax = 31
	// NftNameMax: NFT_NAME_MAXLEN is 256 with the NUL (linux/netfilter/nf_tables.h, Linux >= 4.16).
	NftNameMax = 255
	// MikroTikNameMax is muninn's own cap for RouterOS address-list names.
	MikroTikNameMax = 63
)

// NftTable is the nftables table (family inet) the nft format fills: its
// own, because the bouncer deletes and recreates its table inet muninn.
const NftTable = "muninn_export"

// SetNames returns the set or list names format f uses for the list of kind
// k named name: one for IPv4 and one for IPv6 (the same for MikroTik, whose
// lists hold both families; name itself for the other formats).
//
//   - ipset: muninn-KIND-NAME-4 and -6, at most IPSetNameMax bytes;
//   - nft: muninn_KIND_NAME_4 and _6 (nft identifiers take '-'), at most NftNameMax;
//   - MikroTik: muninn-KIND-NAME, at most MikroTikNameMax.
//
// The mapping is one-to-one: a name of [A-Za-z0-9_-] that fits is used as
// it is; one that does not fit (or has other characters, which the API
// never sends) is cut, other characters become '_', and '.' and the first 8
// hex digits of SHA-256("KIND/NAME") are appended. Names used as they are
// hold no '.', so they never equal a cut one, and two cut names are equal
// only if their hashes are.
func SetNames(f Format, k Kind, name string) (v4, v6 string) {
	switch f {
	case IPSet:
		return setName("muninn-", "-", k, name, "-4", IPSetNameMax), setName("muninn-", "-", k, name, "-6", IPSetNameMax)
	case Nft:
		return setName("muninn_", "_", k, name, "_4", NftNameMax), setName("muninn_", "_", k, name, "_6", NftNameMax)
	case MikroTik:
		n := setName("muninn-", "-", k, name, "", MikroTikNameMax)
		return n, n
	}
	return name, name
}

// setName is prefix KIND sep NAME suffix, cut and hashed as SetNames says.
func setName(prefix, sep string, k Kind, name, suffix string, limit int) string {
	head := prefix + string(k) + sep
	plain := name != ""
	for i := 0; i < len(name) && plain; i++ {
		plain = nameByte(name[i])
	}
	if plain && len(head)+len(name)+len(suffix) <= limit {
		return head + name + suffix
	}
	sum := sha256.Sum256([]byte(string(k) + "/" + name))
	tag := "." + hex.EncodeToString(sum[:4])
	keep := max(0, min(len(name), limit-len(head)-len(tag)-len(suffix)))
	b := []byte(name[:keep])
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '_'
		}
	}
	return head + string(b) + tag + suffix
}

// nameByte reports whether c may appear in a set name as it is (the
// contract's ObjectName characters).
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// WritePrefixes writes l to w in format f. An unknown format is an error.
func WritePrefixes(w io.Writer, f Format, l List) error {
	ew := &errWriter{w: w}
	comments := func() {
		for _, c := range l.Comments {
			ew.printf("# %s\n", oneLine(c))
		}
	}
	both := func(line func(p netip.Prefix)) {
		for _, ps := range [2][]netip.Prefix{l.V4, l.V6} {
			for _, p := range ps {
				line(p)
			}
		}
	}
	switch f {
	case IPSet, Nft, MikroTik:
		if l.Kind != KindDeny && l.Kind != KindAllow && l.Kind != KindList {
			return fmt.Errorf("export: list %s: kind %q is not deny, allow or list", l.Name, l.Kind)
		}
	}
	switch f {
	case Txt:
		both(func(p netip.Prefix) { ew.printf("%s\n", p) })
	case Plain:
		comments()
		both(func(p netip.Prefix) { ew.printf("%s\n", p) })
	case Nginx:
		comments()
		both(func(p netip.Prefix) { ew.printf("%s 1;\n", p) })
	case HAProxy:
		comments()
		both(func(p netip.Prefix) { ew.printf("%s %s\n", p, l.Name) })
	case IPSet:
		comments()
		n4, n6 := SetNames(f, l.Kind, l.Name)
		for _, s := range []struct {
			name, family string
			ps           []netip.Prefix
			fam          int
		}{{n4, "inet", l.V4, 4}, {n6, "inet6", l.V6, 6}} {
			if !l.holds(s.fam) {
				continue
			}
			ew.printf("create %s hash:net family %s -exist\nflush %s\n", s.name, s.family, s.name)
			for _, p := range s.ps {
				ew.printf("add %s %s -exist\n", s.name, p)
			}
		}
	case Nft:
		comments()
		n4, n6 := SetNames(f, l.Kind, l.Name)
		ew.printf("table inet %s {\n}\n", NftTable)
		for _, s := range []struct {
			name, typ string
			ps        []netip.Prefix
			fam       int
		}{{n4, "ipv4_addr", l.V4, 4}, {n6, "ipv6_addr", l.V6, 6}} {
			if !l.holds(s.fam) {
				continue
			}
			ew.printf("add set inet %s %s { type %s; flags interval; }\nflush set inet %s %s\n", NftTable, s.name, s.typ, NftTable, s.name)
			// One element statement per 1,000 keeps each netlink message small.
			for i := 0; i < len(s.ps); i += 1000 {
				chunk := s.ps[i:min(i+1000, len(s.ps))]
				elems := make([]string, len(chunk))
				for j, p := range chunk {
					elems[j] = p.String()
				}
				ew.printf("add element inet %s %s { %s }\n", NftTable, s.name, strings.Join(elems, ", "))
			}
		}
	case MikroTik:
		comments()
		name, _ := SetNames(f, l.Kind, l.Name)
		for _, s := range []struct {
			menu string
			ps   []netip.Prefix
			fam  int
		}{{"/ip firewall address-list", l.V4, 4}, {"/ipv6 firewall address-list", l.V6, 6}} {
			if !l.holds(s.fam) {
				continue
			}
			ew.printf("%s\nremove [find list=%q]\n", s.menu, name)
			for _, p := range s.ps {
				ew.printf("add list=%q address=%s\n", name, p)
			}
		}
	default:
		return fmt.Errorf("export: unknown prefix list format %q", f)
	}
	return ew.err
}

// oneLine keeps a comment on its line.
func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

// errWriter keeps the first write error, so a format is written straight
// through and checked once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
