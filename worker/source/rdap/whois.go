package rdap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
)

// maxWhoisBytes bounds a whois answer; real ones are a few KiB.
const maxWhoisBytes = 1 << 20

// whoisQuery is the query text a registry's server expects for an address.
func whoisQuery(registry string, addr netip.Addr) string {
	switch registry {
	case RegistryARIN:
		// "n" restricts to networks, "+" asks for full details (org and
		// points of contact) instead of a summary list.
		return "n + " + addr.String()
	case RegistryRIPE:
		// -B: do not filter e-mail attributes out of the objects.
		return "-B " + addr.String()
	default:
		return addr.String()
	}
}

func (c *Client) queryWhois(ctx context.Context, addr netip.Addr, registry string) (*Network, error) {
	server := c.cfg.WhoisServers[registry]
	if server == "" {
		server = DefaultWhoisServers[registry]
	}
	if server == "" {
		return nil, fmt.Errorf("rdap: whois %s: no whois server for registry %q", addr, registry)
	}
	text, err := Whois(ctx, server, whoisQuery(registry, addr), c.cfg.WhoisTimeout)
	if err != nil {
		return nil, err
	}
	n, err := ParseWhois(registry, text)
	if err != nil {
		return nil, fmt.Errorf("rdap: whois %s at %s: %w", addr, server, err)
	}
	n.Registry, n.Source = registry, SourceWhois
	raw, err := json.Marshal(map[string]string{"whois": text})
	if err != nil {
		return nil, fmt.Errorf("rdap: whois %s: %w", addr, err)
	}
	n.Raw = raw
	return n, nil
}

// Whois sends query to a whois server (host:port) and returns its answer.
func Whois(ctx context.Context, server, query string, timeout time.Duration) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return "", fmt.Errorf("rdap: whois dial %s: %w", server, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("rdap: whois %s: %w", server, err)
		}
	}
	// Unblock reads when ctx is cancelled without a deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, query+"\r\n"); err != nil {
		return "", fmt.Errorf("rdap: whois send to %s: %w", server, err)
	}
	body, err := io.ReadAll(io.LimitReader(conn, maxWhoisBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("rdap: whois read from %s: %w", server, err)
	}
	if len(body) > maxWhoisBytes {
		return "", fmt.Errorf("rdap: whois read from %s: answer over %d bytes", server, maxWhoisBytes)
	}
	return string(body), nil
}

// whoisObject is one blank-line separated block of "key: value" lines, keys
// lowercased, values in order.
type whoisObject struct {
	attrs []whoisAttr
}

type whoisAttr struct{ key, value string }

func (o whoisObject) get(key string) string {
	for _, a := range o.attrs {
		if a.key == key {
			return a.value
		}
	}
	return ""
}

func (o whoisObject) first() string {
	if len(o.attrs) == 0 {
		return ""
	}
	return o.attrs[0].key
}

// splitObjects parses whois text into objects. Comment lines (%, #) end an
// object; RPSL continuation lines (leading space, tab or '+') extend the
// previous value. Comments are returned separately: RIPE puts the abuse
// contact in one.
func splitObjects(text string) (objs []whoisObject, comments []string) {
	var cur whoisObject
	flush := func() {
		if len(cur.attrs) > 0 {
			objs = append(objs, cur)
		}
		cur = whoisObject{}
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), maxWhoisBytes)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == '%' || line[0] == '#':
			flush()
			comments = append(comments, strings.TrimSpace(strings.TrimLeft(line, "%#")))
		case (line[0] == ' ' || line[0] == '\t' || line[0] == '+') && len(cur.attrs) > 0:
			last := &cur.attrs[len(cur.attrs)-1]
			last.value = strings.TrimSpace(last.value + " " + strings.TrimSpace(strings.TrimPrefix(line, "+")))
		default:
			key, value, ok := strings.Cut(line, ":")
			key = strings.TrimSpace(key)
			if !ok || key == "" || strings.ContainsAny(key, " \t") {
				continue // free text, not an attribute
			}
			cur.attrs = append(cur.attrs, whoisAttr{key: strings.ToLower(key), value: strings.TrimSpace(value)})
		}
	}
	flush()
	return objs, comments
}

// ParseWhois extracts a Network from a whois answer. The layout is detected
// from the text (ARIN's NetRange, LACNIC's owner, otherwise RPSL as used by
// RIPE, APNIC and AFRINIC); registry is only a hint for the ambiguous case.
func ParseWhois(registry, text string) (*Network, error) {
	objs, comments := splitObjects(text)
	var (
		n   *Network
		err error
	)
	switch {
	case hasKey(objs, "netrange"):
		n, err = parseARIN(objs)
	case hasKey(objs, "owner") || registry == RegistryLACNIC:
		n, err = parseLACNIC(objs)
	default:
		n, err = parseRPSL(objs, comments)
	}
	if err != nil {
		return nil, fmt.Errorf("rdap: parse whois: %w", err)
	}
	return n, nil
}

func hasKey(objs []whoisObject, key string) bool {
	for _, o := range objs {
		if o.get(key) != "" {
			return true
		}
	}
	return false
}

var errNoNetwork = errors.New("no network object in answer")

// size orders candidate networks: fewer addresses is more specific.
func specificity(ps []netip.Prefix) int {
	best := 0
	for _, p := range ps {
		best = max(best, p.Bits()+128-p.Addr().BitLen())
	}
	return best
}

// parseARIN reads ARIN's "key: value" layout. With "n +" ARIN may answer
// several networks (an allocation and its reassignments), each followed by
// its organisation; the most specific network wins.
func parseARIN(objs []whoisObject) (*Network, error) {
	var nets []*Network
	var cur *Network
	for _, o := range objs {
		for _, a := range o.attrs {
			switch a.key {
			case "netrange":
				start, end, ok := strings.Cut(a.value, "-")
				if !ok {
					return nil, fmt.Errorf("NetRange %q: want start - end", a.value)
				}
				ps, err := rangePrefixes(start, end)
				if err != nil {
					return nil, fmt.Errorf("NetRange: %w", err)
				}
				cur = &Network{Prefixes: ps}
				nets = append(nets, cur)
			case "cidr":
				// NetRange already gives the exact prefixes; CIDR is
				// the same set written by ARIN and is only checked.
				if cur != nil {
					for _, s := range strings.Split(a.value, ",") {
						if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil || !containsPrefix(cur.Prefixes, p.Masked()) {
							return nil, fmt.Errorf("CIDR %q does not match NetRange %v", a.value, cur.Prefixes)
						}
					}
				}
			case "nethandle":
				setOnce(cur, &cur.Handle, a.value)
			case "netname":
				setOnce(cur, &cur.Name, a.value)
			case "orgname", "custname":
				setOnce(cur, &cur.Org, a.value)
			case "country":
				setOnce(cur, &cur.Country, a.value)
			case "orgabuseemail":
				setOnce(cur, &cur.AbuseEmail, a.value)
			}
		}
	}
	if len(nets) == 0 {
		return nil, errNoNetwork
	}
	best := nets[0]
	for _, n := range nets[1:] {
		if specificity(n.Prefixes) > specificity(best.Prefixes) {
			best = n
		}
	}
	// A reassignment to a customer (CustName) has no abuse contact of its
	// own: the allocation's organisation handles abuse for it.
	for i := len(nets) - 1; i >= 0 && best.AbuseEmail == ""; i-- {
		best.AbuseEmail = nets[i].AbuseEmail
	}
	return best, nil
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// setOnce sets *field when cur exists and the field is still empty.
func setOnce(cur *Network, field *string, v string) {
	if cur != nil && *field == "" {
		*field = v
	}
}

// parseRPSL reads RIPE-style objects: inetnum/inet6num for the network,
// organisation for org-name, role/irt for abuse-mailbox.
func parseRPSL(objs []whoisObject, comments []string) (*Network, error) {
	var best *Network
	var bestObj whoisObject
	for _, o := range objs {
		var ps []netip.Prefix
		switch o.first() {
		case "inetnum":
			start, end, ok := strings.Cut(o.get("inetnum"), "-")
			if !ok {
				return nil, fmt.Errorf("inetnum %q: want start - end", o.get("inetnum"))
			}
			var err error
			if ps, err = rangePrefixes(start, end); err != nil {
				return nil, fmt.Errorf("inetnum: %w", err)
			}
		case "inet6num":
			p, err := netip.ParsePrefix(o.get("inet6num"))
			if err != nil {
				return nil, fmt.Errorf("inet6num: %w", err)
			}
			ps = []netip.Prefix{p.Masked()}
		default:
			continue
		}
		if best == nil || specificity(ps) > specificity(best.Prefixes) {
			best, bestObj = &Network{Prefixes: ps, Handle: o.get(o.first())}, o
		}
	}
	if best == nil {
		return nil, errNoNetwork
	}
	best.Name = bestObj.get("netname")
	best.Country = strings.ToUpper(bestObj.get("country"))
	orgHandle := bestObj.get("org")
	for _, o := range objs {
		if o.first() == "organisation" && (orgHandle == "" || o.get("organisation") == orgHandle) {
			best.Org = o.get("org-name")
			break
		}
	}
	if best.Org == "" {
		best.Org = bestObj.get("descr")
	}
	best.AbuseEmail = rpslAbuse(objs, comments, bestObj)
	return best, nil
}

// rpslAbuse finds the abuse address: RIPE's "Abuse contact for ... is
// 'x'" comment, else the abuse-mailbox of the role or irt object the network
// points to (abuse-c, mnt-irt), else any abuse-mailbox in the answer.
func rpslAbuse(objs []whoisObject, comments []string, network whoisObject) string {
	for _, c := range comments {
		if strings.HasPrefix(c, "Abuse contact for") {
			if i := strings.LastIndex(c, " is '"); i >= 0 {
				if m := strings.TrimSuffix(c[i+len(" is '"):], "'"); strings.Contains(m, "@") {
					return m
				}
			}
		}
	}
	refs := map[string]bool{}
	for _, a := range network.attrs {
		if a.key == "abuse-c" || a.key == "mnt-irt" {
			refs[a.value] = true
		}
	}
	for _, o := range objs {
		if (refs[o.get("nic-hdl")] || refs[o.get("irt")]) && o.get("abuse-mailbox") != "" {
			return o.get("abuse-mailbox")
		}
	}
	for _, o := range objs {
		if m := o.get("abuse-mailbox"); m != "" {
			return m
		}
	}
	return ""
}

// parseLACNIC reads LACNIC's layout: inetnum in (possibly abbreviated) CIDR
// form such as "200.160/13", owner, ownerid, country, and abuse-c pointing to
// a contact block with nic-hdl and e-mail.
func parseLACNIC(objs []whoisObject) (*Network, error) {
	var n *Network
	var netObj whoisObject
	for _, o := range objs {
		v := o.get("inetnum")
		if v == "" {
			continue
		}
		p, err := parseLACNICPrefix(v)
		if err != nil {
			return nil, fmt.Errorf("inetnum: %w", err)
		}
		if n == nil || specificity([]netip.Prefix{p}) > specificity(n.Prefixes) {
			n, netObj = &Network{Prefixes: []netip.Prefix{p}, Handle: v}, o
		}
	}
	if n == nil {
		return nil, errNoNetwork
	}
	n.Org = netObj.get("owner")
	n.Name = netObj.get("ownerid")
	n.Country = strings.ToUpper(netObj.get("country"))
	abuse := netObj.get("abuse-c")
	for _, o := range objs {
		if h := o.get("nic-hdl"); h != "" && h == abuse {
			n.AbuseEmail = o.get("e-mail")
			break
		}
		if h := o.get("nic-hdl-br"); h != "" && h == abuse {
			n.AbuseEmail = o.get("e-mail")
			break
		}
	}
	return n, nil
}

// parseLACNICPrefix accepts "200.160.0.0/13" and LACNIC's abbreviated
// "200.160/13", and IPv6 prefixes.
func parseLACNICPrefix(s string) (netip.Prefix, error) {
	addr, bits, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%q: want a CIDR", s)
	}
	if !strings.Contains(addr, ":") {
		for strings.Count(addr, ".") < 3 {
			addr += ".0"
		}
	}
	p, err := netip.ParsePrefix(addr + "/" + bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: %w", s, err)
	}
	return p.Masked(), nil
}
