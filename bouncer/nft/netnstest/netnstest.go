//go:build linux

// Package netnstest makes network namespaces for tests: each test's own
// namespaces, created with ip netns, entered per locked OS thread with setns
// and deleted at cleanup. The nftables tests and the end-to-end tests share it.
package netnstest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go4.org/netipx"
	"golang.org/x/sys/unix"
)

var seq atomic.Int64

// RequireRoot skips tb unless it runs as root with the ip and nft commands:
// namespaces and nftables need root, and CI runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root for network namespaces and nftables")
	}
	for _, cmd := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(cmd); err != nil {
			if os.Getenv("CI") != "" {
				// CI is root and make deps installs both: a skip there
				// would hide a test CI never ran.
				tb.Fatalf("CI must run this: the %s command is missing (make deps installs it)", cmd)
			}
			tb.Skipf("needs the %s command", cmd)
		}
	}
}

// Run runs a command and fails tb with its output when it fails.
func Run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(tb, err, "%v: %s", args, out)
	return string(out)
}

// NS is a network namespace a test created; it is deleted at cleanup.
type NS struct {
	Name string
	// FD is an open handle on the namespace (for setns or nftables.WithNetNSFd).
	FD int
}

// New creates a namespace with its loopback up.
func New(tb testing.TB) *NS {
	tb.Helper()
	name := fmt.Sprintf("mn%d-%d", os.Getpid(), seq.Add(1))
	Run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(tb, err)
	tb.Cleanup(func() { unix.Close(fd) })
	ns := &NS{Name: name, FD: fd}
	ns.Exec(tb, "ip", "link", "set", "lo", "up")
	return ns
}

// Exec runs a command inside the namespace.
func (ns *NS) Exec(tb testing.TB, args ...string) string {
	tb.Helper()
	return Run(tb, append([]string{"ip", "netns", "exec", ns.Name}, args...)...)
}

// Do runs f with the calling OS thread in the namespace; sockets created in f stay in it.
func (ns *NS) Do(tb testing.TB, f func()) {
	tb.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(tb, err)
	defer unix.Close(orig)
	require.NoError(tb, unix.Setns(ns.FD, unix.CLONE_NEWNET))
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			panic(err) // never leave a thread in a test namespace
		}
	}()
	f()
}

// AddrSets runs `nft -j list` with what inside the namespace (e.g. "table", "inet",
// "muninn", or "set", "inet", "muninn", name) and returns every set of addresses
// (type ipv4_addr or ipv6_addr) the listing holds, by name, as an IPSet; sets of
// other types (ports, interfaces, honeypot concatenations) are left out. For
// test-sized sets: the listing is parsed in memory.
func (ns *NS) AddrSets(tb testing.TB, what ...string) map[string]*netipx.IPSet {
	tb.Helper()
	out := ns.Exec(tb, append([]string{"nft", "-j", "list"}, what...)...)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	require.NoError(tb, json.Unmarshal([]byte(out), &doc))
	sets := map[string]*netipx.IPSet{}
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue
		}
		var s struct {
			Name string            `json:"name"`
			Type json.RawMessage   `json:"type"`
			Elem []json.RawMessage `json:"elem"`
		}
		require.NoError(tb, json.Unmarshal(raw, &s))
		var typ string
		if json.Unmarshal(s.Type, &typ) != nil || (typ != "ipv4_addr" && typ != "ipv6_addr") {
			continue // a concatenation (an array of types) or another type
		}
		var b netipx.IPSetBuilder
		for _, e := range s.Elem {
			addElem(tb, &b, e)
		}
		ips, err := b.IPSet()
		require.NoError(tb, err)
		sets[s.Name] = ips
	}
	return sets
}

// addElem adds one set element of nft's JSON to b: an address, a prefix, a range,
// or any of them wrapped with element options ({"elem": {"val": ...}}).
func addElem(tb testing.TB, b *netipx.IPSetBuilder, e json.RawMessage) {
	tb.Helper()
	var str string
	if json.Unmarshal(e, &str) == nil {
		a, err := netip.ParseAddr(str)
		require.NoError(tb, err)
		b.Add(a)
		return
	}
	var obj struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range []string `json:"range"`
		Elem  *struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	require.NoError(tb, json.Unmarshal(e, &obj), "%s", e)
	switch {
	case obj.Prefix != nil:
		a, err := netip.ParseAddr(obj.Prefix.Addr)
		require.NoError(tb, err)
		b.AddPrefix(netip.PrefixFrom(a, obj.Prefix.Len))
	case len(obj.Range) == 2:
		lo, err := netip.ParseAddr(obj.Range[0])
		require.NoError(tb, err)
		hi, err := netip.ParseAddr(obj.Range[1])
		require.NoError(tb, err)
		b.AddRange(netipx.IPRangeFrom(lo, hi))
	case obj.Elem != nil:
		addElem(tb, b, obj.Elem.Val)
	default:
		tb.Fatalf("netnstest: unknown set element %s", e)
	}
}
