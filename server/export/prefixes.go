// Package export writes muninn's prefix lists and effective views in the
// formats of the tools that consume them: firewall and proxy list files
// (pfSense/OPNsense URL tables, nginx geo, HAProxy maps, ipset, nftables,
// MikroTik RouterOS), the MaxMind DB format, Zeek intel and Suricata
// reputation files. It only formats: what goes in comes from the index,
// the resolver and the render hub, through the API handlers.
package export

import (
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
	// IPSet is an `ipset restore` file filling sets muninn-NAME-4 and -6.
	IPSet Format = "ipset"
	// Nft is an `nft -f` file filling interval sets muninn_NAME_4 and _6 in
	// table inet muninn.
	Nft Format = "nft"
	// MikroTik is a RouterOS script filling address list muninn-NAME.
	MikroTik Format = "mikrotik"
)

// Formats lists the text formats WritePrefixes writes.
var Formats = []Format{Txt, Plain, Nginx, HAProxy, IPSet, Nft, MikroTik}

// List is a prefix list to write: its name (a ruleset or list name, as the
// contract's ObjectName: [A-Za-z0-9][A-Za-z0-9_-]*), comment lines (written
// where the format has comments) and its prefixes, IPv4 and IPv6 in address
// order.
//
// Family 4 or 6 says the list holds only that family (a ?family= answer):
// the set formats (ipset, nft, MikroTik) then create, flush and fill only
// that family's set, so loading the IPv6 answer never empties the IPv4 set
// an earlier load filled. 0 means both.
type List struct {
	Name     string
	Comments []string
	V4, V6   []netip.Prefix
	Family   int
}

// holds reports whether l's answer covers family f (4 or 6).
func (l List) holds(f int) bool { return l.Family == 0 || l.Family == f }

// ipsetNameMax is the longest ipset set name (IPSET_MAXNAMELEN 32, with the NUL).
const ipsetNameMax = 31

// SetNames returns the set or list names format f uses for list name: one
// for IPv4 and one for IPv6 (the same for HAProxy and MikroTik, whose lists
// hold both families).
func SetNames(f Format, name string) (v4, v6 string) {
	switch f {
	case IPSet:
		base := "muninn-" + name
		if len(base) > ipsetNameMax-2 {
			base = base[:ipsetNameMax-2]
		}
		return base + "-4", base + "-6"
	case Nft:
		// nft identifiers are letters, digits, '_', '/', '\' and '.'.
		base := "muninn_" + strings.ReplaceAll(name, "-", "_")
		return base + "_4", base + "_6"
	case MikroTik:
		return "muninn-" + name, "muninn-" + name
	}
	return name, name
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
		n4, n6 := SetNames(f, l.Name)
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
		n4, n6 := SetNames(f, l.Name)
		ew.printf("table inet muninn {\n}\n")
		for _, s := range []struct {
			name, typ string
			ps        []netip.Prefix
			fam       int
		}{{n4, "ipv4_addr", l.V4, 4}, {n6, "ipv6_addr", l.V6, 6}} {
			if !l.holds(s.fam) {
				continue
			}
			ew.printf("add set inet muninn %s { type %s; flags interval; }\nflush set inet muninn %s\n", s.name, s.typ, s.name)
			// One element statement per 1,000 keeps each netlink message small.
			for i := 0; i < len(s.ps); i += 1000 {
				chunk := s.ps[i:min(i+1000, len(s.ps))]
				elems := make([]string, len(chunk))
				for j, p := range chunk {
					elems[j] = p.String()
				}
				ew.printf("add element inet muninn %s { %s }\n", s.name, strings.Join(elems, ", "))
			}
		}
	case MikroTik:
		comments()
		name, _ := SetNames(f, l.Name)
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
