// Package render turns rulesets into versioned renders (DESIGN.md §5): per
// rule the exact IPv4 and IPv6 prefix sets, minus the never-block guard for
// block rules. A Hub recomputes renders when the database announces a change,
// stores each distinct one with a new version, keeps the latest bytes cached
// (plain and gzip) for serving, answers long polls and builds deltas.
package render

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
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

// Build compiles rs over facts f (f.Lists included), removes the guarded
// addresses from block rules and returns the render without version and
// time, with its hash.
func Build(rs *policy.Ruleset, f *policy.Facts, g *guard.Guard) (*Render, error) {
	st, err := newState(rs, f.Lists, g, true, f, 0)
	if err != nil {
		return nil, err
	}
	return st.render()
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
// its bytes, encoded on first use and then cached for every reader.
type Snapshot struct {
	Render *Render

	once       sync.Once
	body, gzip []byte

	// dec holds the CrowdSec decisions of the render (see Decisions).
	dec decisionCache
}

func newSnapshot(r *Render) *Snapshot { return &Snapshot{Render: r} }

// Body returns the JSON body of the render.
func (s *Snapshot) Body() []byte {
	s.encode()
	return s.body
}

// Gzip returns Body gzip-compressed.
func (s *Snapshot) Gzip() []byte {
	s.encode()
	return s.gzip
}

// encode fills body and gzip once. A Render holds only strings, numbers and
// netip values, whose encoding cannot fail, and compressing into memory
// cannot fail either: a failure is a bug, hence the panic.
func (s *Snapshot) encode() {
	s.once.Do(func() {
		body, err := json.Marshal(s.Render)
		if err != nil {
			panic(fmt.Sprintf("render: encode %s: %v", s.Render.Ruleset, err))
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // only fails on a bad level
		if _, err := zw.Write(body); err != nil {
			panic(fmt.Sprintf("render: gzip %s: %v", s.Render.Ruleset, err))
		}
		if err := zw.Close(); err != nil {
			panic(fmt.Sprintf("render: gzip %s: %v", s.Render.Ruleset, err))
		}
		s.body, s.gzip = body, buf.Bytes()
	})
}
