// Package render turns rulesets into versioned renders (DESIGN.md §5): per
// rule the exact IPv4 and IPv6 prefix sets, minus the never-block guard for
// block rules. A Hub recomputes renders when the database announces a change,
// stores each distinct one with a new version, keeps the latest bytes cached
// (plain and gzip) for serving, answers long polls and builds deltas.
package render

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
)

// Scope is the traffic a rendered ruleset looks at. Port ranges are expanded
// to single ports, which is what the bouncer's wire format carries.
type Scope struct {
	Protocol string   `json:"protocol"`
	DPorts   []uint16 `json:"dports"`
	IIfNames []string `json:"iifnames"`
}

// Honeypot lists the ports whose packets mark their source.
type Honeypot struct {
	TCP []uint16 `json:"tcp"`
	UDP []uint16 `json:"udp"`
}

// Rule is one rendered rule. A full render fills V4/V6, a delta the Add*/Del*
// lists. ID is the 1-based position of the rule in the ruleset.
type Rule struct {
	ID     int      `json:"id"`
	Action string   `json:"action"`
	Rate   string   `json:"rate"`
	Text   string   `json:"text"`
	V4     []string `json:"v4,omitempty"`
	V6     []string `json:"v6,omitempty"`
	AddV4  []string `json:"add_v4,omitempty"`
	DelV4  []string `json:"del_v4,omitempty"`
	AddV6  []string `json:"add_v6,omitempty"`
	DelV6  []string `json:"del_v6,omitempty"`
}

// Render is a full render or a delta of one ruleset, as served.
type Render struct {
	Ruleset      string          `json:"ruleset"`
	Version      int64           `json:"version"`
	Hash         string          `json:"hash"`
	GeneratedAt  time.Time       `json:"generated_at"`
	Delta        bool            `json:"delta,omitempty"`
	BaseVersion  int64           `json:"base_version,omitempty"`
	Hook         string          `json:"hook"`
	Scope        Scope           `json:"scope"`
	Default      string          `json:"default"`
	Honeypot     Honeypot        `json:"honeypot"`
	Rules        []Rule          `json:"rules"`
	GuardRemoved []guard.Removed `json:"guard_removed"`
}

// content is what the hash covers: everything but version, hash and time.
type content struct {
	Ruleset      string          `json:"ruleset"`
	Hook         string          `json:"hook"`
	Scope        Scope           `json:"scope"`
	Default      string          `json:"default"`
	Honeypot     Honeypot        `json:"honeypot"`
	Rules        []Rule          `json:"rules"`
	GuardRemoved []guard.Removed `json:"guard_removed"`
}

// Build compiles rs over facts f, removes the guarded addresses from block
// rules and returns the render without version and time, with its hash.
func Build(rs *policy.Ruleset, f *policy.Facts, g *guard.Guard) (*Render, error) {
	c, err := policy.Compile(rs, f)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	r := &Render{
		Ruleset: rs.Name, Hook: rs.Hook, Default: string(rs.Default),
		Scope:        Scope{Protocol: rs.Scope.Protocol, DPorts: expandPorts(rs.Scope.DPorts), IIfNames: nonNil(rs.Scope.IIfNames)},
		Honeypot:     Honeypot{TCP: nonNil(rs.Honeypot.TCP), UDP: nonNil(rs.Honeypot.UDP)},
		Rules:        make([]Rule, len(c.Rules)),
		GuardRemoved: []guard.Removed{},
	}
	for i, cr := range c.Rules {
		v4, v6 := cr.Set.V4, cr.Set.V6
		if cr.Rule.Action == policy.ActionBlock && g != nil {
			var removed []guard.Removed
			v4, v6, removed = g.Filter(v4, v6, i+1)
			r.GuardRemoved = append(r.GuardRemoved, removed...)
		}
		r.Rules[i] = Rule{ID: i + 1, Action: string(cr.Rule.Action), Rate: cr.Rule.Rate, Text: policy.FormatRule(cr.Rule),
			V4: strs(v4), V6: strs(v6)}
	}
	h, err := hashOf(r)
	if err != nil {
		return nil, err
	}
	r.Hash = h
	return r, nil
}

func hashOf(r *Render) (string, error) {
	b, err := json.Marshal(content{r.Ruleset, r.Hook, r.Scope, r.Default, r.Honeypot, r.Rules, r.GuardRemoved})
	if err != nil {
		return "", fmt.Errorf("render: hash: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func expandPorts(prs []policy.PortRange) []uint16 {
	out := []uint16{}
	for _, p := range prs {
		for port := int(p.From); port <= int(p.To); port++ {
			out = append(out, uint16(port))
		}
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func strs(ps []netip.Prefix) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// Delta returns the changes from base to cur as a delta render, or false when
// more than set contents changed (another hook, scope, default, honeypot or
// rule list), in which case only a full render will do.
func Delta(base, cur *Render) (*Render, bool) {
	if base.Ruleset != cur.Ruleset || base.Hook != cur.Hook || base.Default != cur.Default ||
		!equalJSON(base.Scope, cur.Scope) || !equalJSON(base.Honeypot, cur.Honeypot) || len(base.Rules) != len(cur.Rules) {
		return nil, false
	}
	d := *cur
	d.Delta, d.BaseVersion = true, base.Version
	d.Rules = make([]Rule, len(cur.Rules))
	for i, r := range cur.Rules {
		b := base.Rules[i]
		if b.Action != r.Action || b.Rate != r.Rate || b.Text != r.Text {
			return nil, false
		}
		d.Rules[i] = Rule{ID: r.ID, Action: r.Action, Rate: r.Rate, Text: r.Text}
		d.Rules[i].AddV4, d.Rules[i].DelV4 = diff(b.V4, r.V4)
		d.Rules[i].AddV6, d.Rules[i].DelV6 = diff(b.V6, r.V6)
	}
	return &d, true
}

// diff returns what is in to but not from (add) and in from but not to (del).
func diff(from, to []string) (add, del []string) {
	in := make(map[string]struct{}, len(from))
	for _, s := range from {
		in[s] = struct{}{}
	}
	for _, s := range to {
		if _, ok := in[s]; ok {
			delete(in, s)
		} else {
			add = append(add, s)
		}
	}
	for s := range in {
		del = append(del, s)
	}
	slices.Sort(del)
	return add, del
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// Snapshot is a served render: the parsed form (for deltas and decisions) and
// its cached bytes.
type Snapshot struct {
	Render *Render
	// Body is the JSON body and Gzip the same gzip-compressed.
	Body []byte
	Gzip []byte
}

// newSnapshot encodes r once for all readers.
func newSnapshot(r *Render, body []byte) (*Snapshot, error) {
	if body == nil {
		var err error
		if body, err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("render: encode %s: %w", r.Ruleset, err)
		}
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // only fails on a bad level
	if _, err := zw.Write(body); err != nil {
		return nil, fmt.Errorf("render: gzip %s: %w", r.Ruleset, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("render: gzip %s: %w", r.Ruleset, err)
	}
	return &Snapshot{Render: r, Body: body, Gzip: buf.Bytes()}, nil
}
