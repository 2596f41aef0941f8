package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const designExample = `ruleset traefik
  hook input
  scope tcp dport 80,443
  default block
  block classification malicious
  block tag "Redtail Cryptobot"
  block tag ipsum and not country US
  allow country US, CA
  allow org "European Union"
  allow cidr 192.0.2.0/24
`

func TestParseDesignExample(t *testing.T) {
	t.Parallel()
	rs, err := Parse(designExample)
	require.NoError(t, err)
	require.Equal(t, "traefik", rs.Name)
	require.Equal(t, Scope{Protocol: "tcp", DPorts: []PortRange{{80, 80}, {443, 443}}}, rs.Scope)
	require.Equal(t, ActionBlock, rs.Default)
	require.Len(t, rs.Rules, 6)
	require.Equal(t, []Cond{{Kind: KindTag, Values: []string{"ipsum"}}, {Kind: KindCountry, Not: true, Values: []string{"US"}}}, rs.Rules[2].Conds)
	require.Equal(t, designExample, Format(rs))
}

func TestParseCanonicalises(t *testing.T) {
	t.Parallel()
	rs, err := Parse("# comment\nruleset x # trailing\n\thoneypot tcp 23,2323\n scope udp iifname eth0 dport 1000-2000\n" +
		"block country de, Fr and continent eu and asn 64500, as1 and cidr 10.1.2.3/8, ::ffff:192.0.2.1 and classification MALICIOUS\n" +
		"throttle 10/minute source \"feed:*\" and tag \"a\\\"b\" and list l1\n")
	require.NoError(t, err)
	require.Equal(t, []Cond{
		{Kind: KindCountry, Values: []string{"DE", "FR"}},
		{Kind: KindContinent, Values: []string{"EU"}},
		{Kind: KindASN, Values: []string{"AS64500", "AS1"}},
		{Kind: KindCIDR, Values: []string{"10.0.0.0/8", "192.0.2.1/32"}},
		{Kind: KindClassification, Values: []string{"malicious"}},
	}, rs.Rules[0].Conds)
	require.Equal(t, `throttle 10/minute source feed:* and tag "a\"b" and list l1`, FormatRule(rs.Rules[1]))
	require.Equal(t, []uint16{23, 2323}, rs.Honeypot.TCP)
	require.Equal(t, Scope{Protocol: "udp", DPorts: []PortRange{{1000, 2000}}, IIfNames: []string{"eth0"}}, rs.Scope)
	again, err := Parse(Format(rs))
	require.NoError(t, err)
	require.Equal(t, rs, again)
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{"", `1:1: expected "ruleset NAME", found end of text`},
		{"# only\n", `2:1: expected "ruleset NAME", found end of text`},
		{"rules x", `1:1: expected "ruleset NAME", found "rules"`},
		{"ruleset", `1:8: expected a ruleset name`},
		{"ruleset a/b", `1:9: expected a ruleset name`},
		{"ruleset a b", `1:11: expected end of line, found "b"`},
		{"ruleset a\n", `2:1: expected a rule or a default line, found end of text`},
		{"ruleset a\n  hook output", `2:8: expected input or forward, found "output"`},
		{"ruleset a\n  hook input\n  hook input", `3:3: duplicate hook line (first on line 2)`},
		{"ruleset a\n  default log", `2:11: expected allow or block, found "log"`},
		{"ruleset a\n  block colour red", `2:9: expected a condition (tag, classification, country, continent, asn, org, cidr, list, source, optionally after not), found "colour"`},
		{"ruleset a\n  block", `2:8: expected a condition`},
		{"ruleset a\n  block tag", `2:12: expected a tag value, found end of line`},
		{"ruleset a\n  block tag x,", `2:15: expected a tag value, found end of line`},
		{"ruleset a\n  block tag x or tag y", `2:15: expected "and", "," or end of line, found "or"`},
		{"ruleset a\n  block tag x and", `2:18: expected a condition`},
		{"ruleset a\n  block not not tag x", `2:13: expected a condition`},
		{"ruleset a\n  block classification evil", `2:24: classification "evil" is not one of`},
		{"ruleset a\n  block country USA", `2:17: country "USA" is not an ISO 3166 alpha-2 code`},
		{"ruleset a\n  block continent XX", `2:19: continent "XX" is not one of`},
		{"ruleset a\n  block asn ASX", `2:13: asn "ASX" is not a number`},
		{"ruleset a\n  block cidr 10.0.0.0/33", `2:14: cidr "10.0.0.0/33" is not a prefix`},
		{"ruleset a\n  block list a/b", `2:14: list name "a/b"`},
		{"ruleset a\n  block tag \"x", `2:13: unterminated quoted string`},
		{"ruleset a\n  block tag \"\\q\"", `2:13: invalid escape`},
		{"ruleset a\n  block tag \"\"", `2:13: empty tag value`},
		{"ruleset a\n  block tag \xff", `2:13: tag value "\xff" is not valid UTF-8`},
		{"ruleset a\n  throttle tag x", `2:12: rate "tag" is not`},
		{"ruleset a\n  throttle 0/second tag x", `2:12: rate "0/second" is not`},
		{"ruleset a\n  scope", `2:8: expected tcp, udp, dport or iifname, found end of line`},
		{"ruleset a\n  scope tcp udp", `2:13: udp given twice in scope`},
		{"ruleset a\n  scope dport 0", `2:15: "0" is not a port number`},
		{"ruleset a\n  scope dport 20-10", `2:15: port range "20-10" ends before it starts`},
		{"ruleset a\n  scope dport 70000", `2:15: "70000" is not a port number`},
		{"ruleset a\n  honeypot sctp 1", `2:12: expected tcp or udp, found "sctp"`},
		{"ruleset a\n  honeypot tcp 1-2", `2:16: "1-2" is not a port number`},
		{"ruleset a\n  honeypot tcp 1\n  honeypot tcp 2", `3:3: duplicate honeypot tcp line`},
		{"ruleset a\n  ruleset b", `2:3: a text holds one ruleset`},
		{"ruleset a\n  , x", `2:3: expected hook, scope, default, honeypot or a rule`},
		{strings.Repeat("#", MaxTextSize+1), `1:1: ruleset text is 262145 bytes, at most 262144 allowed`},
		{"ruleset a\n" + strings.Repeat("  block tag x\n", MaxRules+1), fmt.Sprintf("%d:3: too many rules: at most 1000 allowed", MaxRules+2)},
	} {
		_, err := Parse(tc.text)
		require.Error(t, err, tc.text)
		var se *SyntaxError
		require.True(t, errors.As(err, &se), tc.text)
		require.True(t, strings.HasPrefix(err.Error(), tc.want), "text %q\n got %q\nwant %q", tc.text, err.Error(), tc.want)
	}
}

func TestSelector(t *testing.T) {
	t.Parallel()
	conds, err := ParseSelector("tag ipsum and\n  not country us # comment\n")
	require.NoError(t, err)
	require.Equal(t, []Cond{{Kind: KindTag, Values: []string{"ipsum"}}, {Kind: KindCountry, Not: true, Values: []string{"US"}}}, conds)
	require.Equal(t, "tag ipsum and not country US", FormatSelector(conds))
	for text, want := range map[string]string{
		"":                 "1:1: expected a condition",
		"tag x and":        "1:10: expected a condition",
		"tag x\ncolour y":  `2:1: expected "and", "," or end of text, found "colour"`,
		"cidr 10.0.0.0/40": `1:6: cidr "10.0.0.0/40"`,
	} {
		_, err := ParseSelector(text)
		require.ErrorContains(t, err, want, text)
	}
}

func TestCanonicalize(t *testing.T) {
	t.Parallel()
	var rs Ruleset
	require.NoError(t, json.Unmarshal([]byte(`{"name":"j","scope":{"protocol":"tcp","dports":[80,"1000-2000"],"iifnames":[]},"default":"block","honeypot":{"tcp":[23],"udp":[]},"rules":[{"action":"block","conds":[{"kind":"country","values":["us"]}]}]}`), &rs))
	require.NoError(t, rs.Canonicalize())
	require.Equal(t, "ruleset j\n  hook input\n  scope tcp dport 80,1000-2000\n  default block\n  honeypot tcp 23\n  block country US\n", Format(&rs))
	for _, bad := range []string{
		`{"name":"a b","default":"block"}`,
		`{"name":"a"}`,
		`{"name":"a","hook":"output","default":"block"}`,
		`{"name":"a","default":"log"}`,
		`{"name":"a","rules":[{"action":"drop","conds":[{"kind":"tag","values":["x"]}]}]}`,
		`{"name":"a","rules":[{"action":"block","rate":"1/second","conds":[{"kind":"tag","values":["x"]}]}]}`,
		`{"name":"a","rules":[{"action":"block","conds":[]}]}`,
		`{"name":"a","rules":[{"action":"block","conds":[{"kind":"tag","values":[]}]}]}`,
		`{"name":"a","rules":[{"action":"block","conds":[{"kind":"colour","values":["x"]}]}]}`,
		`{"name":"a","scope":{"protocol":"icmp"},"default":"block"}`,
	} {
		var rs Ruleset
		require.NoError(t, json.Unmarshal([]byte(bad), &rs))
		require.Error(t, rs.Canonicalize(), bad)
	}
	var pr PortRange
	require.Error(t, json.Unmarshal([]byte(`"5-1"`), &pr))
	require.Error(t, json.Unmarshal([]byte(`0`), &pr))
}

// randValue returns a value of kind that is already canonical.
func randValue(r *rand.Rand, kind string) string {
	switch kind {
	case KindClassification:
		return pick(r, poolClass)
	case KindCountry:
		return string([]byte{byte('A' + r.IntN(26)), byte('A' + r.IntN(26))})
	case KindContinent:
		return pick(r, []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
	case KindASN:
		return fmt.Sprintf("AS%d", r.Uint32())
	case KindCIDR:
		if r.IntN(2) == 0 {
			return uni4.randPrefix(r).String()
		}
		return uni6.randPrefix(r).String()
	case KindList:
		return pick(r, []string{"l1", "my-list", "a.b_c"})
	}
	// Free text: bare words, keywords, quotes, unicode, control bytes, invalid UTF-8.
	return pick(r, []string{"ipsum", "Redtail Cryptobot", "and", "not", "feed:*", `a"b\c`, "x,y", "#hash", "Zürich", "tab\there", "scanner:shodan"})
}

func randRulesetFull(r *rand.Rand) *Ruleset {
	rs := &Ruleset{Name: pick(r, []string{"a", "traefik", "x-1.y_2"}), Hook: pick(r, []string{HookInput, HookForward})}
	rs.Scope.Protocol = pick(r, []string{"", "tcp", "udp"})
	for i := r.IntN(3); i > 0; i-- {
		from := uint16(1 + r.IntN(65535))
		rs.Scope.DPorts = append(rs.Scope.DPorts, PortRange{from, from + uint16(r.IntN(int(65535-from)+1))*uint16(r.IntN(2))})
	}
	for i := r.IntN(3); i > 0; i-- {
		rs.Scope.IIfNames = append(rs.Scope.IIfNames, pick(r, []string{"eth0", "wg*", "br-lan"}))
	}
	for i := r.IntN(3); i > 0; i-- {
		rs.Honeypot.TCP = append(rs.Honeypot.TCP, uint16(1+r.IntN(65535)))
	}
	for i := r.IntN(2); i > 0; i-- {
		rs.Honeypot.UDP = append(rs.Honeypot.UDP, uint16(1+r.IntN(65535)))
	}
	rs.Default = pick(r, []Action{"", ActionAllow, ActionBlock})
	n := r.IntN(6)
	if n == 0 && rs.Default == "" {
		n = 1
	}
	for range n {
		rule := Rule{Action: pick(r, []Action{ActionBlock, ActionAllow, ActionLog, ActionThrottle})}
		if rule.Action == ActionThrottle {
			rule.Rate = fmt.Sprintf("%d/%s", 1+r.IntN(1000), pick(r, []string{"second", "minute", "hour", "day"}))
		}
		for i := 1 + r.IntN(3); i > 0; i-- {
			c := Cond{Kind: pick(r, condKinds), Not: r.IntN(3) == 0}
			for j := 1 + r.IntN(3); j > 0; j-- {
				c.Values = append(c.Values, randValue(r, c.Kind))
			}
			rule.Conds = append(rule.Conds, c)
		}
		rs.Rules = append(rs.Rules, rule)
	}
	return rs
}

func TestRoundTripProperty(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 12))
	for range 2000 {
		rs := randRulesetFull(r)
		text := Format(rs)
		got, err := Parse(text)
		require.NoError(t, err, text)
		require.Equal(t, rs, got, text)
		require.Equal(t, text, Format(got))

		b, err := json.Marshal(rs)
		require.NoError(t, err)
		var back Ruleset
		require.NoError(t, json.Unmarshal(b, &back), string(b))
		require.NoError(t, back.Canonicalize())
		require.Equal(t, rs, &back, string(b))

		for _, rule := range rs.Rules {
			conds, err := ParseSelector(FormatSelector(rule.Conds))
			require.NoError(t, err)
			require.Equal(t, rule.Conds, conds)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(designExample)
	f.Add("ruleset a\n  throttle 5/second source \"feed:*\" and not cidr ::ffff:1.2.3.4/120\n  honeypot udp 53\n")
	f.Add("ruleset a\n  scope dport 1-65535 iifname eth0\n  default allow\n")
	// Issue 12: rules that would block (or allow) the whole internet.
	f.Add("ruleset a\n  block cidr 0.0.0.0/0\n  block cidr ::/0 and tag scanner\n  allow not cidr ::ffff:0:0/96\n")
	f.Add("ruleset a\n  default block\n  honeypot tcp 23,2323\n  block tag X\n")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := Parse(text)
		if err != nil {
			var se *SyntaxError
			require.True(t, errors.As(err, &se))
			return
		}
		// Every cidr value the width rule refuses is reported, with its place.
		for _, w := range rs.WideCIDRs() {
			require.Error(t, CheckWidth(w.Err.Prefix))
			require.Positive(t, w.Rule)
		}
		out := Format(rs)
		again, err := Parse(out)
		require.NoError(t, err, out)
		require.Equal(t, rs, again)
		require.Equal(t, out, Format(again))
	})
}
