package flow_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/muninn/muninn/server/flow"
)

// FuzzDecode feeds arbitrary datagrams to both decoders: they must neither
// panic (a recovered goflow2 panic fails the target, so we learn of it) nor
// emit a flow without both addresses.
func FuzzDecode(f *testing.F) {
	f.Add(netflowV5(1, 0, v5Record{src: "10.0.0.5", dst: "203.0.113.9", srcPort: 1, dstPort: 2, proto: 6, packets: 1, bytes: 40}))
	f.Add([]byte{0, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 8, 1, 0, 0, 1, 0, 4, 0, 1})
	f.Add([]byte{0, 10, 0, 20, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 2, 0, 4})
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	src := netip.MustParseAddrPort("192.0.2.1:2055")
	// An input is a sequence of datagrams separated by "|||" given to a
	// fresh decoder, so a template and the data set using it are one
	// reproducible input.
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := flow.NewDecoder(func(fl flow.Flow) {
			if !fl.Src.IsValid() || !fl.Dst.IsValid() {
				panic("flow without addresses")
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, dg := range bytes.Split(b, []byte("|||")) {
			for _, p := range []flow.Protocol{flow.NetFlow, flow.SFlow} {
				if err := d.Decode(p, src, dg, time.Unix(1796040000, 0)); err != nil && strings.Contains(err.Error(), "panic") {
					t.Fatalf("%s: %v", p, err)
				}
			}
		}
	})
}

// FuzzSeqTracker feeds arbitrary datagrams (split at "|||") to one
// sequence tracker as NetFlow and sFlow: no panic, and a datagram is never
// both lost-after and late.
func FuzzSeqTracker(f *testing.F) {
	f.Add(ipfixMessage(100, 1, ipfixTemplates, ipfixData256(3)))
	f.Add(netflowV5(1, 0, v5Record{src: "10.0.0.5", dst: "203.0.113.9", proto: 6, packets: 1, bytes: 40}))
	f.Add(append(v9Header(1, 2, 3), append([]byte("|||"), sflowHeader("192.0.2.1", 0, 1, 1)...)...))
	src := netip.MustParseAddrPort("192.0.2.1:2055")
	f.Fuzz(func(t *testing.T, b []byte) {
		tr := flow.NewSeqTracker()
		for _, dg := range bytes.Split(b, []byte("|||")) {
			for _, p := range []flow.Protocol{flow.NetFlow, flow.SFlow} {
				r, _ := tr.Track(p, src, dg)
				if r.Lost > 0 && (r.Late || r.Reset) {
					t.Fatalf("%s: %+v", p, r)
				}
			}
		}
	})
}
