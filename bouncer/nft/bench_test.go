//go:build linux

package nft

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"

	"github.com/muninn/muninn/bouncer"
)

// Benchmarks run as root in throwaway namespaces:
//
//	go test -run '^$' -bench . -benchtime 1x ./bouncer/nft/
//
// Full applies run in a child process (this test binary, TestApplyChild) so that the
// peak RSS (VmHWM) is the apply's alone.

// benchState is n IPv4 /30 prefixes, 8 addresses apart: n interval elements, none
// adjacent, the worst case for the kernel.
func benchState(n int) *bouncer.State {
	r := bouncer.RulesetState{Name: "bench", Version: 1, Hook: "input", Scope: bouncer.Scope{Protocol: "tcp", DPorts: []uint16{22}}, Default: "allow"}
	rule := bouncer.RuleState{ID: 1, Action: "block"}
	ranges := make([]netipx.IPRange, n)
	for i := range n {
		x := uint32(0x0b000000) + uint32(i)*8 // from 11.0.0.0
		from := netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		ranges[i] = netipx.RangeOfPrefix(netip.PrefixFrom(from, 30))
	}
	rule.V4 = must(bouncer.NewAddrSet(nil, ranges))
	r.Rules = []bouncer.RuleState{rule}
	return (&bouncer.State{}).With(r)
}

// hashState is n single IPv4 addresses, 2 apart.
func hashState(n int) *bouncer.State {
	r := bouncer.RulesetState{Name: "bench", Version: 1, Hook: "input", Scope: bouncer.Scope{Protocol: "tcp", DPorts: []uint16{22}}, Default: "allow"}
	rule := bouncer.RuleState{ID: 1, Action: "block"}
	addrs := make([]netip.Addr, n)
	for i := range n {
		x := uint32(0x0b000000) + uint32(i)*2
		addrs[i] = netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	rule.V4 = must(bouncer.NewAddrSet(addrs, nil))
	r.Rules = []bouncer.RuleState{rule}
	return (&bouncer.State{}).With(r)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestApplyChild is the child half of BenchmarkFullApply; it runs only when asked.
func TestApplyChild(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MUNINN_BENCH_APPLY"))
	if n == 0 {
		t.Skip("child of BenchmarkFullApply")
	}
	requireRoot(t)
	ns := newNS(t)
	st := benchState(n)
	fw := New(Options{NetNSFd: ns.FD, Priority: DefaultPriority})
	start := time.Now()
	require.NoError(t, fw.Apply(context.Background(), st))
	elapsed := time.Since(start)
	fmt.Printf("CHILD seconds=%f hwm_kb=%d\n", elapsed.Seconds(), vmHWM(t))
}

func vmHWM(tb testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(tb, err)
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			require.NoError(tb, err)
			return kb
		}
	}
	tb.Fatal("no VmHWM")
	return 0
}

func BenchmarkFullApply(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{100_000, 300_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var secs, mb float64
			for range b.N {
				cmd := exec.Command(os.Args[0], "-test.run", "^TestApplyChild$", "-test.count", "1")
				cmd.Env = append(os.Environ(), "MUNINN_BENCH_APPLY="+strconv.Itoa(n))
				out, err := cmd.CombinedOutput()
				require.NoError(b, err, "%s", out)
				var hwm int
				for line := range strings.SplitSeq(string(out), "\n") {
					if rest, ok := strings.CutPrefix(line, "CHILD "); ok {
						_, err := fmt.Sscanf(rest, "seconds=%f hwm_kb=%d", &secs, &hwm)
						require.NoError(b, err)
					}
				}
				mb = float64(hwm) / 1024
			}
			b.ReportMetric(secs, "apply-s")
			b.ReportMetric(mb, "peak-RSS-MB")
		})
	}
}

// BenchmarkNftFile loads the same tables with `nft -f` of the dry-run script.
func BenchmarkNftFile(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("nft"); err != nil {
		b.Skip("needs nft")
	}
	for _, n := range []int{100_000, 300_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ns := newNS(b)
			l, err := bouncer.BuildLayout("muninn", DefaultPriority, 1, benchState(n), nil)
			require.NoError(b, err)
			path := filepath.Join(b.TempDir(), "table.nft")
			f, err := os.Create(path)
			require.NoError(b, err)
			w := bufio.NewWriter(f)
			require.NoError(b, bouncer.WriteScript(w, l))
			require.NoError(b, w.Flush())
			require.NoError(b, f.Close())
			b.ResetTimer()
			for range b.N {
				ns.Exec(b, "nft", "-f", path)
			}
		})
	}
}

// BenchmarkDeltaHash applies 1k adds + 1k deletes to a hash set of 1M addresses.
func BenchmarkDeltaHash(b *testing.B) {
	requireRoot(b)
	ns := newNS(b)
	fw := New(Options{NetNSFd: ns.FD, Priority: DefaultPriority})
	st := hashState(1_000_000)
	require.NoError(b, fw.Apply(b.Context(), st))
	rs := st.Ruleset("bench")
	var stateTime, kernelTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		// Delete 1k present addresses (even offsets) and add 1k absent ones (odd).
		var add, del []string
		for j := range 1000 {
			base := uint32(0x0b000000) + uint32((i*1000+j)%500_000)*4
			del = append(del, netip.AddrFrom4([4]byte{byte(base >> 24), byte(base >> 16), byte(base >> 8), byte(base)}).String())
			o := base + 1
			add = append(add, netip.AddrFrom4([4]byte{byte(o >> 24), byte(o >> 16), byte(o >> 8), byte(o)}).String())
		}
		start := time.Now()
		next, d, err := rs.ApplyDelta(bouncer.Render{Ruleset: "bench", Delta: true, BaseVersion: rs.Version, Version: rs.Version + 1,
			Rules: []bouncer.RenderRule{{ID: 1, AddV4: add, DelV4: del}}})
		require.NoError(b, err)
		require.Len(b, d.Rules[0].V4.AddHash, 1000)
		st = st.With(next)
		mid := time.Now()
		require.NoError(b, fw.ApplyDelta(b.Context(), st, []bouncer.RulesetDelta{d}))
		stateTime += mid.Sub(start)
		kernelTime += time.Since(mid)
		rs = st.Ruleset("bench")
	}
	// The two halves of a delta: the bouncer's state update and the netlink transaction.
	b.ReportMetric(float64(stateTime.Microseconds())/1e3/float64(b.N), "state-ms/op")
	b.ReportMetric(float64(kernelTime.Microseconds())/1e3/float64(b.N), "kernel-ms/op")
}

// BenchmarkDeltaInterval changes one prefix of an interval set of 300k ranges.
func BenchmarkDeltaInterval(b *testing.B) {
	requireRoot(b)
	ns := newNS(b)
	fw := New(Options{NetNSFd: ns.FD, Priority: DefaultPriority})
	st := benchState(300_000)
	require.NoError(b, fw.Apply(b.Context(), st))
	rs := st.Ruleset("bench")
	var stateTime, kernelTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		// Replace one /30 by the /29 around it, or back.
		x := uint32(0x0b000000) + uint32(i%1000)*64
		a := netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		p30, p29 := netip.PrefixFrom(a, 30).String(), netip.PrefixFrom(a, 29).String()
		add, del := p29, p30
		if (i/1000)%2 == 1 {
			add, del = p30, p29
		}
		start := time.Now()
		next, d, err := rs.ApplyDelta(bouncer.Render{Ruleset: "bench", Delta: true, BaseVersion: rs.Version, Version: rs.Version + 1,
			Rules: []bouncer.RenderRule{{ID: 1, AddV4: []string{add}, DelV4: []string{del}}}})
		require.NoError(b, err)
		st = st.With(next)
		mid := time.Now()
		require.NoError(b, fw.ApplyDelta(b.Context(), st, []bouncer.RulesetDelta{d}))
		stateTime += mid.Sub(start)
		kernelTime += time.Since(mid)
		rs = st.Ruleset("bench")
	}
	b.ReportMetric(float64(stateTime.Microseconds())/1e3/float64(b.N), "state-ms/op")
	b.ReportMetric(float64(kernelTime.Microseconds())/1e3/float64(b.N), "kernel-ms/op")
}
