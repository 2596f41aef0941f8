// Package sensor turns log lines of the tools that see attacks (Cowrie,
// OpenSSH, web servers, fail2ban, dnsmasq, Zeek) into events: which address
// did what, when, on which host. The formats are those of
// ../shared/reference/integrations.md §4–5; each parser reads one line at a
// time and keeps only the little state its format needs (Zeek TSV's #fields
// header, dnsmasq's query serials).
package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Event kinds the parsers produce. Detections select events by kind.
const (
	KindSSHAuthFailure   = "ssh-auth-failure"  // a failed password/key/keyboard-interactive attempt
	KindSSHInvalidUser   = "ssh-invalid-user"  // a login name the host does not know
	KindSSHRefused       = "ssh-refused"       // not allowed (AllowUsers, DenyGroups, root refused, locked, tcpwrappers)
	KindSSHMaxAuth       = "ssh-max-auth"      // maximum authentication attempts exceeded
	KindSSHPreauth       = "ssh-preauth"       // disconnected before authenticating, bad banner, no matching algorithm
	KindSSHLogin         = "ssh-login"         // Accepted <method> for USER
	KindHTTPExploitPath  = "http-exploit-path" // a request for a well-known exploit path (any status)
	KindHoneypotConnect  = "honeypot-connect"  // cowrie.session.connect
	KindHoneypotLogin    = "honeypot-login"    // cowrie.login.failed
	KindHoneypotSuccess  = "honeypot-login-success"
	KindHoneypotCommand  = "honeypot-command"  // cowrie.command.input / .failed
	KindHoneypotDownload = "honeypot-download" // cowrie.session.file_download / _upload
	KindHoneypotOther    = "honeypot-event"    // any other cowrie event with a src_ip
	KindFail2banBan      = "fail2ban-ban"
	KindFail2banUnban    = "fail2ban-unban"
	KindDNSAnswer        = "dns-answer"    // an address a name resolved to (passive DNS, not a sighting)
	KindConnRejected     = "conn-rejected" // Zeek conn_state S0, REJ, RSTOS0, RSTRH, SH, SHR, OTH: unanswered or refused
	KindConn             = "conn"          // any other Zeek connection
	KindRegex            = "regex-match"   // the regex format's default kind
)

// HTTPKind is the kind of a web request with status code status: http-404,
// http-401, ... Only 4xx statuses become events (2xx/3xx are ordinary
// traffic, 5xx the server's own fault), besides exploit paths.
func HTTPKind(status int) string { return fmt.Sprintf("http-%d", status) }

// Event is one thing a log line says an address did.
type Event struct {
	// Addr is the remote address the line is about (the attacker, the
	// client, or for KindDNSAnswer the address a name resolved to).
	Addr netip.Addr
	// Kind is one of the Kind constants or HTTPKind.
	Kind string
	// At is the time the line carries; zero when it has none (regex).
	At time.Time
	// Host is the host the line names (syslog host, Cowrie sensor, journald
	// _HOSTNAME, HTTP virtual host), or "".
	Host string
	// User is the login name the line names, or "".
	User string
	// Detail is a short free text: the request line, the Cowrie event id,
	// the fail2ban jail, the Zeek conn_state.
	Detail string
	// DNS is set for KindDNSAnswer: the name that resolved to Addr and the
	// client that asked (invalid when the line does not say).
	DNS *DNSAnswer
}

// DNSAnswer is one passive DNS record: Name answered with the event's Addr
// for Client.
type DNSAnswer struct {
	Name   string
	Client netip.Addr
}

// Formats lists every format NewParser knows.
var Formats = []string{"cowrie", "sshd", "nginx", "traefik", "caddy", "fail2ban", "dnsmasq", "zeek-dns", "zeek-conn", "regex"}

// Options tunes a Parser.
type Options struct {
	// Location is the zone of timestamps without an offset (BSD syslog,
	// fail2ban); nil means UTC.
	Location *time.Location
	// Now is the reference time for BSD syslog timestamps, which carry no
	// year: the year is Now's, or the one before when that would put the
	// line more than a day in the future. Zero means time.Now.
	Now time.Time
	// Pattern is the regex format's expression; it must have a named group
	// "ip" and may have "host" and "user".
	Pattern string
	// Kind is the regex format's event kind (default KindRegex).
	Kind string
}

// ErrUnknownFormat is returned by NewParser for a format not in Formats.
var ErrUnknownFormat = errors.New("sensor: unknown format")

// Parser reads the lines of one stream of one format.
type Parser struct {
	format string
	loc    *time.Location
	now    time.Time
	re     *regexp.Regexp
	ipIdx  int
	hostIx int
	userIx int
	kind   string
	// zeek TSV state
	zeek zeekTSV
	// dnsmasq state
	dns dnsmasqState
}

// NewParser returns a parser for format. The regex format needs
// Options.Pattern with a named group "ip".
func NewParser(format string, o Options) (*Parser, error) {
	p := &Parser{format: format, loc: o.Location, now: o.Now, kind: o.Kind}
	if p.loc == nil {
		p.loc = time.UTC
	}
	if p.kind == "" {
		p.kind = KindRegex
	}
	switch format {
	case "cowrie", "sshd", "nginx", "traefik", "caddy", "fail2ban", "dnsmasq", "zeek-dns", "zeek-conn":
	case "regex":
		if o.Pattern == "" {
			return nil, errors.New("sensor: the regex format needs a pattern")
		}
		re, err := regexp.Compile(o.Pattern)
		if err != nil {
			return nil, fmt.Errorf("sensor: pattern: %w", err)
		}
		p.re = re
		p.ipIdx, p.hostIx, p.userIx = re.SubexpIndex("ip"), re.SubexpIndex("host"), re.SubexpIndex("user")
		if p.ipIdx < 0 {
			return nil, errors.New("sensor: the pattern needs a named group (?P<ip>...)")
		}
	default:
		return nil, fmt.Errorf("%w %q (one of %s)", ErrUnknownFormat, format, strings.Join(Formats, ", "))
	}
	return p, nil
}

// Format is the parser's format name.
func (p *Parser) Format() string { return p.format }

// Parse reads one line (without its newline). It returns the line's events:
// none for a line of the format that says nothing about an address (an
// accepted web request, a header, a query line), and an error for a line
// that is not of the format.
func (p *Parser) Parse(line string) ([]Event, error) {
	evs, err := p.parse(line)
	for i := range evs {
		if !evs[i].At.IsZero() {
			evs[i].At = evs[i].At.UTC()
		}
	}
	return evs, err
}

func (p *Parser) parse(line string) ([]Event, error) {
	switch p.format {
	case "cowrie":
		return parseCowrie(line)
	case "sshd":
		return p.parseSSHD(line)
	case "nginx":
		return p.parseNginx(line)
	case "traefik":
		return p.parseTraefik(line)
	case "caddy":
		return parseCaddy(line)
	case "fail2ban":
		return p.parseFail2ban(line)
	case "dnsmasq":
		return p.parseDnsmasq(line)
	case "zeek-dns":
		return p.parseZeek(line, true)
	case "zeek-conn":
		return p.parseZeek(line, false)
	default:
		return p.parseRegex(line)
	}
}

func (p *Parser) parseRegex(line string) ([]Event, error) {
	m := p.re.FindStringSubmatch(line)
	if m == nil {
		return nil, nil
	}
	a, err := parseIP(m[p.ipIdx])
	if err != nil {
		return nil, err
	}
	ev := Event{Addr: a, Kind: p.kind}
	if p.hostIx > 0 {
		ev.Host = m[p.hostIx]
	}
	if p.userIx > 0 {
		ev.User = m[p.userIx]
	}
	return []Event{ev}, nil
}

// parseIP parses an address, unmapping IPv4-in-IPv6 and dropping a zone.
func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap().WithZone(""), nil
}

// Private says a is private, loopback, link-local, unspecified or
// multicast: counted, never tagged by default.
func Private(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || cgnat.Contains(a)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")
