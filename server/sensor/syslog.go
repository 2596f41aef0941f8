package sensor

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// syslogLine is a syslog line split into its parts.
type syslogLine struct {
	at   time.Time
	host string
	prog string // the tag without its [pid]
	msg  string
}

var errNotSyslog = errors.New("not a syslog line (want \"Mmm dd hh:mm:ss host prog[pid]: message\" or an RFC 3339 timestamp)")

// splitSyslog reads a BSD syslog line ("Mar  3 10:00:01 gw sshd[812]: ...",
// local time without a year) or an RFC 3339 one ("2026-01-12T11:15:58.792703+00:00
// gw sshd[1581943]: ...", rsyslog's default on Ubuntu 24.04). The host may be
// missing (dnsmasq's own log-facility file: "Mar  3 10:00:02 dnsmasq[501]: ...").
func (p *Parser) splitSyslog(line string) (syslogLine, error) {
	var sl syslogLine
	var rest string
	switch {
	case len(line) >= 16 && line[3] == ' ' && line[15] == ' ' && line[9] == ':':
		t, err := time.ParseInLocation("Jan _2 15:04:05", line[:15], p.loc)
		if err != nil {
			return sl, errNotSyslog
		}
		now := p.now
		if now.IsZero() {
			now = time.Now()
		}
		now = now.In(p.loc)
		t = time.Date(now.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, p.loc)
		if t.After(now.Add(24 * time.Hour)) {
			t = t.AddDate(-1, 0, 0)
		}
		sl.at, rest = t, line[16:]
	case len(line) > 20 && line[4] == '-' && line[10] == 'T':
		ts, r, ok := strings.Cut(line, " ")
		if !ok {
			return sl, errNotSyslog
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return sl, errNotSyslog
		}
		sl.at, rest = t, r
	default:
		return sl, errNotSyslog
	}
	first, r, ok := strings.Cut(rest, " ")
	if !ok {
		return sl, errNotSyslog
	}
	if !strings.HasSuffix(first, ":") {
		sl.host = first
		first, r, ok = strings.Cut(r, " ")
		if !ok && !strings.HasSuffix(first, ":") {
			return sl, errNotSyslog
		}
	}
	if !strings.HasSuffix(first, ":") {
		return sl, errNotSyslog
	}
	tag := strings.TrimSuffix(first, ":")
	if i := strings.IndexByte(tag, '['); i >= 0 {
		tag = tag[:i]
	}
	sl.prog, sl.msg = tag, r
	return sl, nil
}

// journalEntry is the part of a `journalctl -o json` line the sshd format reads.
type journalEntry struct {
	Realtime   string `json:"__REALTIME_TIMESTAMP"` // µs since the epoch, as a string
	Hostname   string `json:"_HOSTNAME"`
	Identifier string `json:"SYSLOG_IDENTIFIER"`
	Comm       string `json:"_COMM"`
	Message    any    `json:"MESSAGE"` // a string, or an array of bytes when not UTF-8
}

// sshdRule is one kind of sshd message: the expression's groups "ip" and
// optionally "user", "method", "invalid". Every message the expression
// matches holds needle, so a message without it skips the expression (most
// of a line's parse time was spent failing the rules it is not).
type sshdRule struct {
	kind   string
	needle string
	re     *regexp.Regexp
}

// sshdTail is what sshd appends after the address.
const sshdTail = `(?: port \d+)?(?: on \S+(?: port \d+)?)?(?: ssh\d*)?(?::.*)?(?: \[preauth\])?\s*$`

// sshdRules follow fail2ban's sshd filter (mode normal, plus the aggressive
// mode's pre-auth lines as KindSSHPreauth). The user part is greedy and the
// address is anchored to the end of the message, so a user name holding
// " from 1.2.3.4" cannot name another address.
var sshdRules = []sshdRule{
	{KindSSHAuthFailure, "Failed ", regexp.MustCompile(`^(?:error: |fatal: )?Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*) from (?P<ip>\S+)` + sshdTail)},
	{KindSSHAuthFailure, "Authentication ", regexp.MustCompile(`^(?:error: |fatal: )?(?:PAM: )?Authentication (?:failure|error|failed) for (?:invalid user )?(?P<user>.*?) (?:from )?(?P<ip>\S+)` + sshdTail)},
	{KindSSHAuthFailure, "User not known ", regexp.MustCompile(`^(?:error: )?(?:PAM: )?User not known to the underlying authentication module for (?:invalid user )?(?P<user>.*) (?:from )?(?P<ip>\S+)` + sshdTail)},
	{KindSSHInvalidUser, "user ", regexp.MustCompile(`^(?:Illegal|Invalid) user (?P<user>.*?) (?:from )?(?P<ip>\S+)` + sshdTail)},
	{KindSSHRefused, "ROOT LOGIN REFUSED FROM ", regexp.MustCompile(`^ROOT LOGIN REFUSED FROM (?P<ip>\S+)` + sshdTail)},
	{KindSSHRefused, "not allowed because ", regexp.MustCompile(`^User (?P<user>.+) from (?P<ip>\S+) not allowed because `)},
	{KindSSHRefused, "refused connect from ", regexp.MustCompile(`^refused connect from \S* ?\((?P<ip>[^)]+)\)`)},
	{KindSSHMaxAuth, "maximum authentication attempts exceeded ", regexp.MustCompile(`^(?:error: )?maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*) from (?P<ip>\S+)` + sshdTail)},
	{KindSSHPreauth, "Received disconnect from ", regexp.MustCompile(`^Received disconnect from (?P<ip>\S+?)(?: port \d+)?:\s*3: .*Auth fail`)},
	{KindSSHPreauth, " [preauth]", regexp.MustCompile(`^(?:Connection (?:closed|reset)|Disconnected) (?:by|from) (?:(?:invalid|authenticating) user (?P<user>.*) )?(?P<ip>\S+) port \d+ \[preauth\]\s*$`)},
	{KindSSHPreauth, "Did not receive identification string from ", regexp.MustCompile(`^Did not receive identification string from (?P<ip>\S+)`)},
	{KindSSHPreauth, "Timeout before authentication for ", regexp.MustCompile(`^Timeout before authentication for (?:connection from )?(?P<ip>\S+)`)},
	{KindSSHPreauth, "Bad protocol version identification ", regexp.MustCompile(`^Bad protocol version identification .* from (?P<ip>\S+)`)},
	{KindSSHPreauth, "Unable to negotiate with ", regexp.MustCompile(`^Unable to negotiate with (?P<ip>\S+) port \d+: no matching`)},
	{KindSSHPreauth, "banner exchange: Connection from ", regexp.MustCompile(`^banner exchange: Connection from (?P<ip>\S+) port \d+: invalid format`)},
	{KindSSHLogin, "Accepted ", regexp.MustCompile(`^Accepted (?P<method>\S+) for (?P<user>.*) from (?P<ip>\S+)` + sshdTail)},
}

func (p *Parser) parseSSHD(line string) ([]Event, error) {
	var at time.Time
	var host, prog, msg string
	if strings.HasPrefix(line, "{") {
		var je journalEntry
		if err := json.Unmarshal([]byte(line), &je); err != nil {
			return nil, fmt.Errorf("journald JSON: %w", err)
		}
		us, err := strconv.ParseInt(je.Realtime, 10, 64)
		if err != nil {
			return nil, errors.New("journald JSON: __REALTIME_TIMESTAMP must be microseconds since the epoch")
		}
		at = time.UnixMicro(us).UTC()
		host, prog = je.Hostname, je.Identifier
		if prog == "" {
			prog = je.Comm
		}
		s, ok := je.Message.(string)
		if !ok {
			return nil, nil // a binary MESSAGE is not one of sshd's lines
		}
		msg = s
	} else {
		sl, err := p.splitSyslog(line)
		if err != nil {
			// `sshd -E file` writes bare messages: no time, host or tag.
			sl = syslogLine{prog: "sshd", msg: line}
		}
		at, host, prog, msg = sl.at, sl.host, sl.prog, sl.msg
	}
	if prog != "sshd" && prog != "sshd-session" && prog != "sshd-auth" {
		return nil, nil
	}
	for _, r := range sshdRules {
		if !strings.Contains(msg, r.needle) {
			continue
		}
		m := r.re.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		a, err := parseIP(m[r.re.SubexpIndex("ip")])
		if err != nil {
			return nil, nil // a host name (UseDNS yes): nothing to block
		}
		ev := Event{Addr: a, Kind: r.kind, At: at, Host: host, Detail: msg}
		if i := r.re.SubexpIndex("user"); i > 0 {
			ev.User = m[i]
		}
		if i := r.re.SubexpIndex("method"); i > 0 && r.kind == KindSSHAuthFailure && m[i] == "publickey" && m[r.re.SubexpIndex("invalid")] == "" {
			return nil, nil // a failed key of a real user is a client trying its keys
		}
		return []Event{ev}, nil
	}
	return nil, nil
}

var fail2banRe = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,(\d{3}))? fail2ban\.actions\s*\[\d+\]: [A-Z]+\s+\[([^\]]+)\] (?:Restore )?(Ban|Unban) (\S+)\s*$`)

// parseFail2ban reads fail2ban's own log: "2026-03-03 10:00:05,123
// fail2ban.actions        [812]: NOTICE  [sshd] Ban 203.0.113.9" (local time).
// Other fail2ban lines carry no event.
func (p *Parser) parseFail2ban(line string) ([]Event, error) {
	if len(line) < 19 || line[4] != '-' || line[10] != ' ' {
		return nil, errors.New("not a fail2ban log line (want \"yyyy-mm-dd hh:mm:ss,mmm fail2ban.…\")")
	}
	m := fail2banRe.FindStringSubmatch(line)
	if m == nil {
		return nil, nil
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", m[1], p.loc)
	if err != nil {
		return nil, fmt.Errorf("fail2ban time: %w", err)
	}
	if m[2] != "" {
		ms, _ := strconv.Atoi(m[2])
		t = t.Add(time.Duration(ms) * time.Millisecond)
	}
	a, err := parseIP(m[5])
	if err != nil {
		return nil, err
	}
	kind := KindFail2banBan
	if m[4] == "Unban" {
		kind = KindFail2banUnban
	}
	return []Event{{Addr: a, Kind: kind, At: t, Detail: m[3]}}, nil
}

// dnsmasqState ties dnsmasq's answers to the query and client they belong
// to: by serial with log-queries=extra, else by the latest query of a name.
type dnsmasqState struct {
	bySerial map[string]dnsQuery
	byName   map[string]dnsQuery
}

type dnsQuery struct {
	name   string
	client string
}

// maxDNSState bounds the remembered queries; past it the maps start over.
const maxDNSState = 4096

var (
	dnsmasqExtra = regexp.MustCompile(`^(\d+) (\S+)/\d+ (.*)$`)
	dnsmasqQuery = regexp.MustCompile(`^query\[[A-Za-z0-9]+\] (\S+) from (\S+)$`)
	dnsmasqReply = regexp.MustCompile(`^(reply|cached|cached-stale|config|DHCP|/\S+) (\S+) is (\S+)$`)
)

// parseDnsmasq reads dnsmasq's log-queries lines (plain and =extra) and
// returns a KindDNSAnswer for each answer that is an address.
func (p *Parser) parseDnsmasq(line string) ([]Event, error) {
	sl, err := p.splitSyslog(line)
	if err != nil {
		return nil, err
	}
	if sl.prog != "dnsmasq" && sl.prog != "pihole-FTL" {
		return nil, nil
	}
	if p.dns.bySerial == nil || len(p.dns.bySerial) > maxDNSState || len(p.dns.byName) > maxDNSState {
		p.dns.bySerial, p.dns.byName = map[string]dnsQuery{}, map[string]dnsQuery{}
	}
	msg, serial, client := sl.msg, "", ""
	if m := dnsmasqExtra.FindStringSubmatch(msg); m != nil {
		serial, client, msg = m[1], m[2], m[3]
	}
	if m := dnsmasqQuery.FindStringSubmatch(msg); m != nil {
		q := dnsQuery{name: m[1], client: m[2]}
		if serial != "" {
			if _, ok := p.dns.bySerial[serial]; !ok {
				p.dns.bySerial[serial] = q
			}
		}
		p.dns.byName[m[1]] = q
		return nil, nil
	}
	m := dnsmasqReply.FindStringSubmatch(msg)
	if m == nil {
		return nil, nil
	}
	name, dest := m[2], m[3]
	a, err := parseIP(dest)
	if err != nil {
		// A reverse answer: the address is in the name slot.
		ra, rerr := parseIP(name)
		if rerr != nil || strings.HasPrefix(dest, "<") || strings.ToUpper(dest) == dest {
			return nil, nil // NXDOMAIN, NODATA, <CNAME>, ...
		}
		a, name = ra, dest
	}
	q, ok := p.dns.bySerial[serial]
	if !ok || serial == "" {
		q = p.dns.byName[name]
	}
	if client == "" {
		client = q.client
	}
	ans := &DNSAnswer{Name: strings.TrimSuffix(name, ".")}
	if c, err := parseIP(client); err == nil {
		ans.Client = c
	}
	evs := []Event{{Addr: a, Kind: KindDNSAnswer, At: sl.at, Host: sl.host, Detail: m[1], DNS: ans}}
	if serial != "" && ok && q.name != name {
		// The end of a CNAME chain: the address also answered the name asked.
		evs = append(evs, Event{Addr: a, Kind: KindDNSAnswer, At: sl.at, Host: sl.host, Detail: m[1],
			DNS: &DNSAnswer{Name: strings.TrimSuffix(q.name, "."), Client: ans.Client}})
	}
	return evs, nil
}
