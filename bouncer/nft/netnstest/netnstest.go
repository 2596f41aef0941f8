//go:build linux

// Package netnstest makes network namespaces for tests: each test's own
// namespaces, created with ip netns, entered per locked OS thread with setns
// and deleted at cleanup. The nftables tests and the end-to-end tests share it.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
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
