//go:build linux

package flow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/muninn/muninn/bouncer/nft/netnstest"
	"github.com/muninn/muninn/server/flow"
	"github.com/muninn/muninn/server/store"
)

// requireCommands skips unless the commands exist; under CI=true (where make
// deps installs them) a missing one fails instead.
func requireCommands(tb testing.TB, cmds ...string) {
	tb.Helper()
	netnstest.RequireRoot(tb)
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatalf("CI must run this: %s is missing (make deps installs it)", c)
			}
			tb.Skipf("needs %s", c)
		}
	}
}

// lab is two namespaces joined by a veth pair: "in" holds the inside host
// 192.0.2.10 (documentation addresses are the exporter's inside network
// here), "out" the outside address 203.0.113.66 (classified malicious by
// setup), with IPv6 off and static neighbours so the link carries only the
// test's traffic. The collector listens on 127.0.0.1 inside "out", where
// the exporter runs capturing on the veth.
type lab struct {
	*testBundle
	in, out *netnstest.NS
	port    int
	cancel  context.CancelFunc
	done    chan error
}

func newLab(t *testing.T, p flow.Protocol) *lab {
	t.Helper()
	b := setup(t, flow.Config{})
	l := &lab{testBundle: b, in: netnstest.New(t), out: netnstest.New(t)}
	netnstest.Run(t, "ip", "link", "add", "vi", "netns", l.in.Name, "type", "veth", "peer", "name", "vo", "netns", l.out.Name)
	for _, x := range []struct {
		ns        *netnstest.NS
		dev, addr string
		peer, mac string
		peerMAC   string
	}{{l.in, "vi", "192.0.2.10", "203.0.113.66", "02:00:00:00:00:0a", "02:00:00:00:00:42"},
		{l.out, "vo", "203.0.113.66", "192.0.2.10", "02:00:00:00:00:42", "02:00:00:00:00:0a"}} {
		x.ns.Exec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
		x.ns.Exec(t, "ip", "link", "set", x.dev, "address", x.mac)
		x.ns.Exec(t, "ip", "addr", "add", x.addr+"/32", "dev", x.dev)
		x.ns.Exec(t, "ip", "link", "set", x.dev, "up")
		x.ns.Exec(t, "ip", "route", "add", x.peer+"/32", "dev", x.dev)
		x.ns.Exec(t, "ip", "neigh", "replace", x.peer, "lladdr", x.peerMAC, "dev", x.dev, "nud", "permanent")
	}
	ctx := context.Background()
	_, err := b.st.FlowExporterPut(ctx, store.FlowExporter{Address: netip.MustParseAddr("127.0.0.1"), Name: "softflowd",
		Inside: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, "test")
	require.NoError(t, err)
	c, err := flow.New(b.st, b.ix, slog.New(slog.NewTextHandler(testWriter{t}, nil)), func() time.Time { return b.now }, prometheus.NewRegistry(), flow.Config{
		Listen: []flow.Listener{{Protocol: p, Addr: "127.0.0.1:0"}}, FlushEvery: time.Hour,
		ListenUDP: func(a *net.UDPAddr) (conn *net.UDPConn, err error) {
			l.out.Do(t, func() { conn, err = net.ListenUDP("udp", a) })
			return conn, err
		}})
	require.NoError(t, err)
	b.c = c
	rctx, cancel := context.WithCancel(ctx)
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() { l.done <- c.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-l.done })
	select {
	case addrs := <-c.Bound():
		l.port = addrs[0].(*net.UDPAddr).Port
	case err := <-l.done:
		require.NoError(t, err)
	}
	return l
}

// startProcess starts args inside ns; it is killed (by its pid) at cleanup.
func startProcess(t *testing.T, ns *netnstest.NS, args ...string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("%s: %s", args[0], out)
	})
}

// startGroup starts args inside ns in a process group of its own, its
// output in logf; at cleanup that group (the daemon and the children it
// forked, which hold no pipe of ours) is killed by its id and the log shown.
func startGroup(t *testing.T, ns *netnstest.NS, logf string, args ...string) {
	t.Helper()
	f, err := os.Create(logf)
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		b, _ := os.ReadFile(logf)
		t.Logf("%s: %s", args[0], b)
	})
}

// linkCounts returns what dev in ns sent and received: packets and bytes
// without the 14-byte Ethernet header (the IP bytes an exporter counts).
func linkCounts(t *testing.T, ns *netnstest.NS, dev string) (txPkts, txBytes, rxPkts, rxBytes int64) {
	t.Helper()
	var links []struct {
		Stats struct {
			RX struct{ Bytes, Packets int64 } `json:"rx"`
			TX struct{ Bytes, Packets int64 } `json:"tx"`
		} `json:"stats64"`
	}
	require.NoError(t, json.Unmarshal([]byte(ns.Exec(t, "ip", "-s", "-j", "link", "show", dev)), &links))
	s := links[0].Stats
	return s.TX.Packets, s.TX.Bytes - 14*s.TX.Packets, s.RX.Packets, s.RX.Bytes - 14*s.RX.Packets
}

// traffic sends from the inside host: 5 UDP datagrams of 100 bytes to
// 203.0.113.66:5353 answered by 3 of 200 bytes, and one TCP connection to
// 203.0.113.66:8080 carrying 10,000 bytes up and 3,000 down.
func (l *lab) traffic(t *testing.T) {
	t.Helper()
	var udp *net.UDPConn
	var tcp net.Listener
	var err error
	l.out.Do(t, func() {
		udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("203.0.113.66"), Port: 5353})
		require.NoError(t, err)
		tcp, err = net.Listen("tcp", "203.0.113.66:8080")
		require.NoError(t, err)
	})
	defer udp.Close()
	defer tcp.Close()
	served := make(chan error, 1)
	go func() {
		conn, err := tcp.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		buf := make([]byte, 10000)
		if _, err := io.ReadFull(conn, buf); err != nil {
			served <- err
			return
		}
		_, err = conn.Write(make([]byte, 3000))
		served <- err
	}()
	l.in.Do(t, func() {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("192.0.2.10"), Port: 40000}, &net.UDPAddr{IP: net.ParseIP("203.0.113.66"), Port: 5353})
		require.NoError(t, err)
		defer c.Close()
		for range 5 {
			_, err := c.Write(make([]byte, 100))
			require.NoError(t, err)
		}
		buf := make([]byte, 1500)
		for range 5 {
			_, from, err := udp.ReadFromUDP(buf)
			require.NoError(t, err)
			_ = from
		}
		for range 3 {
			_, err := udp.WriteToUDP(make([]byte, 200), &net.UDPAddr{IP: net.ParseIP("192.0.2.10"), Port: 40000})
			require.NoError(t, err)
		}
		for range 3 {
			_, err := c.Read(buf)
			require.NoError(t, err)
		}
		tc, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP("192.0.2.10")}, &net.TCPAddr{IP: net.ParseIP("203.0.113.66"), Port: 8080})
		require.NoError(t, err)
		_, err = tc.Write(make([]byte, 10000))
		require.NoError(t, err)
		_, err = io.ReadFull(tc, make([]byte, 3000))
		require.NoError(t, err)
		require.NoError(t, tc.Close())
	})
	require.NoError(t, <-served)
}

// sendFiller sends n Ethernet frames of the local experimental EtherType
// 0x88b5 (not IP: flow exporters ignore them) out of dev in the calling
// thread's namespace.
func sendFiller(t *testing.T, dev string, n int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	ifi, err := net.InterfaceByName(dev)
	require.NoError(t, err)
	frame := make([]byte, 1514)
	copy(frame, []byte{0x02, 0, 0, 0, 0, 0x42, 0x02, 0, 0, 0, 0, 0x0a, 0x88, 0xb5})
	for range n {
		require.NoError(t, unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6,
			Addr: [8]byte{0x02, 0, 0, 0, 0, 0x42}}))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestSoftflowd runs the Debian softflowd exporting NetFlow v9 and IPFIX
// while real UDP and TCP traffic crosses the veth, expires its flows with
// softflowctl, and checks the aggregates against the link's own counters,
// the sighting, the profile and the bad-contact event.
func TestSoftflowd(t *testing.T) {
	t.Parallel()
	requireCommands(t, "softflowd", "softflowctl")
	for _, version := range []string{"9", "10"} {
		t.Run("v"+version, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, flow.NetFlow)
			dir := t.TempDir()
			ctl := filepath.Join(dir, "ctl")
			startProcess(t, l.out, "softflowd", "-d", "-i", "vo", "-v", version, "-n", "127.0.0.1:"+strconv.Itoa(l.port),
				"-c", ctl, "-p", filepath.Join(dir, "pid"), "-t", "maxlife=600", "-C", "256")
			waitFor(t, "softflowd's control socket", func() bool {
				return exec.Command("ip", "netns", "exec", l.out.Name, "softflowctl", "-c", ctl, "statistics").Run() == nil
			})
			l.traffic(t)
			txP, txB, rxP, rxB := linkCounts(t, l.out, "vo")
			// Every packet on the link is test traffic: 5+1 UDP up, 3 down, the TCP rest.
			// softflowd reads libpcap's ring only as its blocks fill (it waits
			// for no timeout): non-IP frames, which it ignores, push the
			// test's packets out. Then wait until it processed every IP
			// packet the link carried, and expire.
			l.in.Do(t, func() { sendFiller(t, "vi", 400) })
			want := fmt.Sprintf("Packets processed: %d\n", txP+rxP)
			waitFor(t, want, func() bool {
				st := l.out.Exec(t, "softflowctl", "-c", ctl, "statistics")
				return strings.Contains(st, want)
			})
			l.out.Exec(t, "softflowctl", "-c", ctl, "expire-all")
			waitFor(t, "the expired flows", func() bool {
				return testutil.ToFloat64(l.c.Metric("records", "aggregated")) >= 4
			})
			require.NoError(t, l.c.Flush(context.Background()))
			ctx := context.Background()
			pr, err := flow.Profile(ctx, l.st, l.ix.Snapshot(), netip.MustParsePrefix("192.0.2.10/32"), time.Hour, l.now, nil)
			require.NoError(t, err)
			require.Equal(t, txB+rxB, pr.Bytes, "bytes: profile against the link counters")
			require.Equal(t, txP+rxP, pr.Packets, "packets")
			require.Equal(t, int64(4), pr.Flows)
			// UDP's totals follow from what was sent: 28 bytes of headers a datagram.
			var udpBytes, udpPkts int64
			for _, p := range pr.Ports {
				if p.Key == "5353/17" {
					udpBytes, udpPkts = p.Bytes, p.Packets
				}
			}
			require.Equal(t, int64(5*128+3*228), udpBytes)
			require.Equal(t, int64(8), udpPkts)
			require.Equal(t, []store.FlowCount{{Key: "NL", Bytes: txB + rxB, Packets: txP + rxP, Flows: 4}}, pr.Countries)
			require.Len(t, pr.Contacts, 1)
			require.Equal(t, netip.MustParseAddr("203.0.113.66"), pr.Contacts[0].Remote)

			require.NoError(t, l.ix.CatchUp(ctx))
			v, ok := l.ix.Snapshot().Lookup(netip.MustParseAddr("203.0.113.66"))
			require.True(t, ok)
			require.Equal(t, int64(2), v.Sightings, "setup's ingest and the flows")
			rs, err := l.st.FlowRemotes(ctx, netip.MustParseAddr("203.0.113.66"))
			require.NoError(t, err)
			require.Len(t, rs, 1)
			require.Equal(t, "softflowd", rs[0].Exporter)
			require.Equal(t, []int{5353, 8080}, rs[0].Ports)

			evs, err := l.st.ListEvents(ctx, store.EventFilter{Kind: store.EventFlowBadContact})
			require.NoError(t, err)
			require.Len(t, evs, 1)
			require.Equal(t, "192.0.2.10", evs[0].Subject)
			require.Equal(t, "203.0.113.66", evs[0].Details["remote"])
		})
	}
}

// TestPmacctSFlow runs the Debian pmacctd with its sfprobe plugin exporting
// sFlow v5 (every packet sampled: sampling_rate 1) from the veth while the
// same real traffic crosses it, and checks the totals against the link's
// counters. Bounded: it waits on the collector's counters for exactly the
// packets the link carried, then stops pmacctd.
func TestPmacctSFlow(t *testing.T) {
	t.Parallel()
	requireCommands(t, "pmacctd")
	l := newLab(t, flow.SFlow)
	dir := t.TempDir()
	conf := filepath.Join(dir, "pmacctd.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`daemonize: false
pcap_interface: vo
plugins: sfprobe
sfprobe_receiver: 127.0.0.1:%d
sfprobe_agentip: 127.0.0.1
sfprobe_agentsubid: 7
sampling_rate: 1
`, l.port)), 0o600))
	logf := filepath.Join(dir, "pmacctd.log")
	startGroup(t, l.out, logf, "pmacctd", "-f", conf)
	// pmacctd captures once it logged the link type of the interface.
	waitFor(t, "pmacctd's capture", func() bool {
		b, _ := os.ReadFile(logf)
		return strings.Contains(string(b), "link type is")
	})
	t.Cleanup(func() {
		t.Logf("sflow datagrams: decoded %v error %v unknown exporter %v; records aggregated %v transit %v",
			testutil.ToFloat64(l.c.Metric("datagrams", "sflow", "decoded")), testutil.ToFloat64(l.c.Metric("datagrams", "sflow", "error")),
			testutil.ToFloat64(l.c.Metric("datagrams", "sflow", "unknown_exporter")),
			testutil.ToFloat64(l.c.Metric("records", "aggregated")), testutil.ToFloat64(l.c.Metric("records", "transit")))
	})
	l.traffic(t)
	txP, txB, rxP, rxB := linkCounts(t, l.out, "vo")
	// sfprobe sends a datagram as it fills: transit traffic (from the
	// outside address to 198.51.100.1, neither inside, so counted apart)
	// pushes the test's last samples out, a few datagrams each poll.
	l.out.Exec(t, "ip", "route", "add", "198.51.100.1/32", "dev", "vo")
	l.out.Exec(t, "ip", "neigh", "replace", "198.51.100.1", "lladdr", "02:00:00:00:00:0a", "dev", "vo", "nud", "permanent")
	var push *net.UDPConn
	l.out.Do(t, func() {
		var err error
		push, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("203.0.113.66")}, &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 9})
		require.NoError(t, err)
	})
	defer push.Close()
	waitFor(t, fmt.Sprintf("%d sampled packets", txP+rxP), func() bool {
		if testutil.ToFloat64(l.c.Metric("records", "aggregated")) >= float64(txP+rxP) {
			return true
		}
		for range 5 {
			_, err := push.Write([]byte("push"))
			require.NoError(t, err)
		}
		return false
	})
	require.NoError(t, l.c.Flush(context.Background()))
	ctx := context.Background()
	pr, err := flow.Profile(ctx, l.st, l.ix.Snapshot(), netip.MustParsePrefix("192.0.2.10/32"), time.Hour, l.now, nil)
	require.NoError(t, err)
	t.Logf("link: %d packets %d bytes; profile: %d packets %d bytes", txP+rxP, txB+rxB, pr.Packets, pr.Bytes)
	require.Equal(t, txP+rxP, pr.Packets, "packets: one sample each")
	// sFlow's frame_length is the whole Ethernet frame with its FCS: 14 + 4
	// bytes a packet over the IP bytes NetFlow counts.
	require.Equal(t, txB+rxB+18*(txP+rxP), pr.Bytes, "bytes")
	var udpBytes, udpPkts int64
	for _, p := range pr.Ports {
		if p.Key == "5353/17" {
			udpBytes, udpPkts = p.Bytes, p.Packets
		}
	}
	require.Equal(t, int64(5*(128+18)+3*(228+18)), udpBytes)
	require.Equal(t, int64(8), udpPkts)
	require.Equal(t, []store.FlowCount{{Key: "NL", Bytes: pr.Bytes, Packets: txP + rxP, Flows: txP + rxP}}, pr.Countries)
	require.Len(t, pr.Contacts, 1)
	require.Equal(t, netip.MustParseAddr("203.0.113.66"), pr.Contacts[0].Remote)
	// pmacctd's sequence numbers (agent 127.0.0.1, sub-agent 7) had no gap.
	require.Equal(t, 0.0, testutil.ToFloat64(l.c.Metric("sequence_lost", "softflowd", "sflow_v5")))
}
