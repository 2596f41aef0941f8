// Package bouncer is the muninn-bouncer daemon: it long-polls the muninn server for
// ruleset renders, keeps the last good renders on disk, and enforces them through a
// Firewall (nftables on Linux, see bouncer/nft).
package bouncer

import "github.com/muninn/muninn/bouncer/apiclient"

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

// The wire types are the ones generated from openapi/openapi.yaml (tag bouncer);
// these names keep the daemon's code readable.
type (
	// Scope restricts a ruleset to a protocol, destination ports and input
	// interfaces. Ports outside the scope are not touched.
	Scope = apiclient.Scope
	// Honeypot lists the ports whose packets mark their source.
	Honeypot = apiclient.Honeypot
	// RenderRule is one rule of a render: a full render fills V4/V6, a delta the
	// Add*/Del* lists.
	RenderRule = apiclient.RenderRule
	// GuardRemoved is a prefix the never-block guard took out of a block rule.
	GuardRemoved = apiclient.GuardRemoved
	// Render is a full render or a delta of one ruleset (DESIGN §5).
	Render = apiclient.Render
	// RenderResponse is the body of GET /api/v1/bouncer/render. A ruleset absent
	// from Rulesets is unchanged; Removed lists rulesets no longer bound.
	RenderResponse = apiclient.RenderResponse
	// RuleCounter is the packet and byte count of one rule; RuleID 0 is the
	// ruleset's default action.
	RuleCounter = apiclient.RuleCounter
	// Heartbeat is the body of POST /api/v1/bouncer/heartbeat.
	Heartbeat = apiclient.Heartbeat
	// HoneypotHit is a source the kernel saw on a honeypot port.
	HoneypotHit = apiclient.HoneypotHit
	// Report is the body of POST /api/v1/bouncer/reports.
	Report = apiclient.Report
)
