package bouncer_test

import (
	"context"
	"net/netip"
	"os"

	"github.com/muninn/muninn/bouncer"
)

// ExampleDryRun prints the nft script the bouncer would apply for one render,
// for a bouncer whose server is at 192.0.2.10: replies to the host's own
// connections and the server's address are accepted before any rule.
func ExampleDryRun() {
	rs, err := bouncer.NewRulesetState(bouncer.Render{
		Ruleset: "ssh", Version: 1, Hook: "input", Default: "allow",
		Scope: bouncer.Scope{Protocol: "tcp", DPorts: []uint16{22}},
		Rules: []bouncer.RenderRule{{ID: 1, Action: "block", V4: []string{"198.51.100.0/24", "203.0.113.7/32"}}},
	})
	if err != nil {
		panic(err)
	}
	dr := bouncer.NewDryRun(os.Stdout, "muninn", -10, []netip.Addr{netip.MustParseAddr("192.0.2.10")})
	if err := dr.Apply(context.Background(), (&bouncer.State{}).With(rs)); err != nil {
		panic(err)
	}
	// Output:
	// table inet muninn
	// delete table inet muninn
	// table inet muninn {
	// 	counter muninn_generation { packets 0 bytes 0 }
	// 	counter rs_ssh_r1 { }
	// 	counter rs_ssh_default { }
	// 	set rs_ssh_dports { type inet_service; elements = { 22 } }
	// 	set server_v4 { type ipv4_addr; elements = { 192.0.2.10 } }
	// 	set rs_ssh_r1_v4h { type ipv4_addr; elements = { 203.0.113.7 } }
	// 	set rs_ssh_r1_v4i { type ipv4_addr; flags interval; elements = { 198.51.100.0-198.51.100.255 } }
	// 	set rs_ssh_r1_v6h { type ipv6_addr; }
	// 	set rs_ssh_r1_v6i { type ipv6_addr; flags interval; }
	// 	chain input {
	// 		type filter hook input priority -10; policy accept;
	// 		ct state established,related ct direction reply accept
	// 		meta nfproto ipv6 icmpv6 type 133-136 accept
	// 		meta nfproto ipv4 ip saddr @server_v4 accept
	// 		meta l4proto tcp th dport @rs_ssh_dports jump rs_ssh
	// 	}
	// 	chain rs_ssh {
	// 		meta nfproto ipv4 ip saddr @rs_ssh_r1_v4h counter name rs_ssh_r1 drop
	// 		meta nfproto ipv4 ip saddr @rs_ssh_r1_v4i counter name rs_ssh_r1 drop
	// 		meta nfproto ipv6 ip6 saddr @rs_ssh_r1_v6h counter name rs_ssh_r1 drop
	// 		meta nfproto ipv6 ip6 saddr @rs_ssh_r1_v6i counter name rs_ssh_r1 drop
	// 		counter name rs_ssh_default return
	// 	}
	// }
}
