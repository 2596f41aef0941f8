// Package bouncer is the muninn-bouncer daemon: it long-polls the muninn server for
// ruleset renders, keeps the last good renders on disk, and enforces them through a
// Firewall (nftables on Linux, see bouncer/nft).
package bouncer

import "time"

// Actions a rule or a ruleset default can take (DESIGN §4).
const (
	ActionBlock    = "block"
	ActionAllow    = "allow"
	ActionLog      = "log"
	ActionThrottle = "throttle"
)

// Hooks a ruleset can attach to.
const (
	HookInput   = "input"
	HookForward = "forward"
)

// Scope restricts a ruleset to a protocol, destination ports and input interfaces.
// Ports outside the scope are not touched.
type Scope struct {
	Protocol string   `json:"protocol"`
	DPorts   []uint16 `json:"dports"`
	IIFNames []string `json:"iifnames"`
}

// Honeypot lists the ports whose packets mark their source.
type Honeypot struct {
	TCP []uint16 `json:"tcp"`
	UDP []uint16 `json:"udp"`
}

// RenderRule is one rule of a render. A full render fills V4/V6; a delta fills the
// Add*/Del* lists instead.
type RenderRule struct {
	ID     int64    `json:"id"`
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

// GuardRemoved is a prefix the never-block guard took out of a block rule.
type GuardRemoved struct {
	Prefix string `json:"prefix"`
	Rule   int64  `json:"rule"`
	Reason string `json:"reason"`
}

// Render is a full render or a delta of one ruleset (DESIGN §5).
type Render struct {
	Ruleset      string         `json:"ruleset"`
	Version      int64          `json:"version"`
	Hash         string         `json:"hash"`
	GeneratedAt  time.Time      `json:"generated_at"`
	Delta        bool           `json:"delta,omitempty"`
	BaseVersion  int64          `json:"base_version,omitempty"`
	Hook         string         `json:"hook"`
	Scope        Scope          `json:"scope"`
	Default      string         `json:"default"`
	Honeypot     Honeypot       `json:"honeypot"`
	Rules        []RenderRule   `json:"rules"`
	GuardRemoved []GuardRemoved `json:"guard_removed,omitempty"`
}

// RenderResponse is the body of GET /api/v1/bouncer/render. A ruleset absent from
// Rulesets is unchanged; Removed lists rulesets no longer bound to the bouncer.
type RenderResponse struct {
	Rulesets []Render `json:"rulesets"`
	Removed  []string `json:"removed,omitempty"`
}

// RuleCounter is the packet and byte count of one rule. RuleID 0 is the ruleset's
// default action.
type RuleCounter struct {
	Ruleset string `json:"ruleset"`
	RuleID  int64  `json:"rule_id"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Heartbeat is the body of POST /api/v1/bouncer/heartbeat.
type Heartbeat struct {
	Hostname  string           `json:"hostname"`
	Version   string           `json:"version"`
	Applied   map[string]int64 `json:"applied"`
	Counters  []RuleCounter    `json:"counters"`
	LastError string           `json:"last_error"`
}

// HoneypotHit is a source the kernel saw on a honeypot port.
type HoneypotHit struct {
	IP       string    `json:"ip"`
	Ruleset  string    `json:"ruleset"`
	Port     uint16    `json:"port"`
	Protocol string    `json:"protocol"`
	SeenAt   time.Time `json:"seen_at"`
}

// Report is the body of POST /api/v1/bouncer/reports.
type Report struct {
	Honeypot []HoneypotHit `json:"honeypot"`
}
