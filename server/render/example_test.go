package render_test

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/muninn/muninn/server/guard"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
)

// A person suppresses the tag on one address of a tagged /24: the delta
// deletes the /24 and adds the 8 CIDRs around the address.
func ExampleDelta() {
	rs, _ := policy.Parse("ruleset edge\n  block tag scanner\n")
	g := guard.New(nil)
	facts := &policy.Facts{Entries: []policy.Entry{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Tags: []string{"scanner"}}}}
	before, _ := render.Build(rs, facts, g)
	before.Version = 1
	facts.Entries = append(facts.Entries, policy.Entry{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Sources: []string{"feed:x", "manual:alice"}})
	after, _ := render.Build(rs, facts, g)
	after.Version = 2
	d, ok := render.Delta(before, after)
	fmt.Println(ok, d.BaseVersion, d.Version)
	b, _ := json.Marshal(d.Rules[0])
	fmt.Println(string(b))
	// Output:
	// true 1 2
	// {"id":1,"action":"block","rate":"","text":"block tag scanner","add_v4":["203.0.113.0/30","203.0.113.4/31","203.0.113.6/32","203.0.113.8/29","203.0.113.16/28","203.0.113.32/27","203.0.113.64/26","203.0.113.128/25"],"del_v4":["203.0.113.0/24"]}
}
