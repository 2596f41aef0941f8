// Command muninn-fanout measures long-poll fan-out (issue 14, item 2): it
// starts one or more real `muninn serve` processes on a fresh database,
// registers -n bouncers bound to one ruleset, and runs them from this process
// over loopback: most long-poll GET /api/v1/bouncer/render (the muninn
// bouncer's protocol, through bouncer.Client), a share pull
// GET /crowdsec/v1/decisions/stream every -cs-every as CrowdSec bouncers do.
// With every long poll parked it reports the servers' memory (VmRSS and
// VmHWM from /proc, the servers' own) and goroutines per waiter, the server
// CPU time of one idle poll cycle, then ingests one observation the ruleset
// blocks and reports how long each bouncer took to get it (p50, p99, max
// from the ingest's answer), errors, and whether every bouncer ended on the
// same version. It stops itself: -timeout bounds the run; it kills only the
// processes it started and drops the database it created.
//
// Bouncers connect from distinct loopback addresses (127.1.x.y, -per-addr
// each), as bouncers on many hosts would: the server bounds connections per
// peer address (MUNINN_MAX_CONNS_PER_CLIENT, default 64).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/server/pgembed"
)

// options are the flags of one run.
type options struct {
	n        int           // bouncers in all
	csShare  float64       // the share of them pulling the CrowdSec stream
	csEvery  time.Duration // a CrowdSec bouncer's pull cadence
	servers  int           // serve processes on the one database
	wait     time.Duration // the long poll's wait
	idle     time.Duration // each idle measurement window
	timeout  time.Duration // the whole run's bound
	perAddr  int           // bouncers per loopback source address
	bin      string        // the muninn binary; empty builds one
	db       string        // the PostgreSQL server to create the database on
	database string        // the database's name (dropped before and after)
	out      io.Writer     // the report
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "bouncers in all (muninn long polls plus CrowdSec stream pullers)")
	flag.Float64Var(&o.csShare, "cs-share", 0.1, "share of the bouncers pulling /crowdsec/v1/decisions/stream instead of long-polling")
	flag.DurationVar(&o.csEvery, "cs-every", time.Second, "CrowdSec stream pull cadence")
	flag.IntVar(&o.servers, "servers", 1, "muninn serve processes on the one database; bouncers are split between them")
	flag.DurationVar(&o.wait, "wait", 30*time.Second, "long-poll wait (the muninn bouncer's default is 30s)")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "each idle measurement window (at least -wait to see every long poll cycle once)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound of the whole run; everything started is stopped at it")
	flag.IntVar(&o.perAddr, "per-addr", 50, "bouncers per loopback source address (the server allows 64 connections per peer address by default)")
	flag.StringVar(&o.bin, "muninn", "", "muninn binary to run as the servers (default: go build ./server/cmd/muninn into a temporary directory)")
	flag.StringVar(&o.db, "db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server to create the fan-out database on (embedded PostgreSQL when it does not answer)")
	flag.StringVar(&o.database, "database", "muninn_fanout", "name of the database created (and dropped) on -db")
	flag.Parse()
	o.out = os.Stdout
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if _, err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "muninn-fanout:", err)
		os.Exit(1)
	}
}

// result is what one run measured (the report prints it; tests check it).
type result struct {
	muninn, crowdsec      int
	wake, csWake          []time.Duration // per bouncer that got the change
	errors                int64
	errSample             string
	rssBase, rssParked    []int64   // per server, bytes
	hwm                   []int64   // per server at the end, bytes
	goBase, goParked      []goStats // per server
	idlePolls, idleCSPull int64
	idleCPU, idleCSCPU    time.Duration // server CPU in the windows, all servers
	idleDB, idleCSDB      time.Duration // the database's backends' CPU in the windows
	versions              map[int64]int // final version -> muninn bouncers on it
	serverVersions        []int64       // the render version each server answers at the end
	logErrors, logGone    int           // server log lines at ERROR: others, a client gone (context canceled)
	logSample             string
}

func run(ctx context.Context, o options) (*result, error) {
	if o.n < 1 || o.servers < 1 || o.perAddr < 1 || o.csShare < 0 || o.csShare > 1 {
		return nil, errors.New("-n, -servers and -per-addr must be positive and -cs-share within [0,1]")
	}
	if err := raiseNoFile(uint64(o.n) + 1024); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "muninn-fanout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if o.bin == "" {
		o.bin = filepath.Join(tmp, "muninn")
		build := exec.CommandContext(ctx, "go", "build", "-o", o.bin, "./server/cmd/muninn")
		build.Dir, build.Stdout, build.Stderr = moduleRoot(), os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("build muninn: %w", err)
		}
	}
	url, dropDB, err := database(ctx, o.db, o.database, tmp)
	if err != nil {
		return nil, err
	}
	defer dropDB()
	token := "mnt_fanout" + randHex(16)
	var procs []*server
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	// One at a time: the first applies the migrations.
	for i := range o.servers {
		p, err := startServer(ctx, o.bin, url, token, filepath.Join(tmp, fmt.Sprint("data", i)))
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	admin := &adminClient{base: procs[0].base, token: token, hc: &http.Client{Timeout: 30 * time.Second}}
	const ruleset = "fanout"
	if err := admin.do(ctx, http.MethodPut, "/api/v1/rulesets/"+ruleset, "text/plain",
		"ruleset "+ruleset+"\n  hook input\n  scope tcp dport 22\n  block tag fanout\n", http.StatusCreated, nil); err != nil {
		return nil, err
	}
	// The first render, then one blocked address: the version every
	// bouncer starts from is the one after it, on every server.
	v1, err := admin.renderVersion(ctx, ruleset, 0)
	if err != nil {
		return nil, err
	}
	if err := admin.ingest(ctx, "198.51.100.1"); err != nil {
		return nil, err
	}
	v0 := int64(0)
	for _, p := range procs {
		v, err := (&adminClient{base: p.base, token: token, hc: admin.hc}).renderVersion(ctx, ruleset, v1)
		if err != nil {
			return nil, err
		}
		v0 = max(v0, v)
	}
	keys, err := admin.bouncers(ctx, o.n, ruleset)
	if err != nil {
		return nil, err
	}
	res := &result{versions: map[int64]int{}}
	res.crowdsec = int(float64(o.n)*o.csShare + 0.5)
	res.muninn = o.n - res.crowdsec
	for _, p := range procs {
		rss, _, err := procStatus(p.pid())
		if err != nil {
			return nil, err
		}
		res.rssBase = append(res.rssBase, rss)
		g, _ := p.goStats(ctx)
		res.goBase = append(res.goBase, g)
	}

	// The bouncers: muninn ones first, then the CrowdSec ones, each on
	// server i%servers from its own loopback address.
	pctx, stopPollers := context.WithCancel(ctx)
	defer stopPollers()
	fl := &fleet{wait: o.wait, csEvery: o.csEvery, v0: v0, target: "203.0.113.7",
		wakeAt: make([]time.Time, o.n), got: make([]int64, o.n)}
	var wg sync.WaitGroup
	for i := range o.n {
		hc := &http.Client{Transport: transport(i / o.perAddr)}
		base := procs[i%len(procs)].base
		wg.Add(1)
		if i < res.muninn {
			go func() { defer wg.Done(); fl.longPoll(pctx, i, base, keys[i], hc) }()
		} else {
			go func() { defer wg.Done(); fl.csPull(pctx, i, base, keys[i], hc) }()
		}
	}
	defer wg.Wait()
	defer stopPollers()

	// Parked: every long poll has sent its second request (the first got the
	// full render) and the servers' goroutine counts have settled.
	if err := until(ctx, 2*time.Minute, func() bool {
		return fl.parked.Load() >= int64(res.muninn) && fl.csStarted.Load() >= int64(res.crowdsec)
	}); err != nil {
		return nil, fmt.Errorf("%d of %d long polls parked, %d of %d CrowdSec pullers started (%d errors, e.g. %s): %w",
			fl.parked.Load(), res.muninn, fl.csStarted.Load(), res.crowdsec, fl.errors.Load(), fl.errSample(), err)
	}
	for _, p := range procs {
		g := settle(ctx, p)
		rss, _, err := procStatus(p.pid())
		if err != nil {
			return nil, err
		}
		res.rssParked = append(res.rssParked, rss)
		res.goParked = append(res.goParked, g)
	}

	// Idle: nothing changes; the long polls time out and come back, the
	// CrowdSec bouncers pull. First the long polls alone, then both.
	measure := func(count func() int64) (int64, time.Duration, time.Duration, error) {
		c0, cpu0, db0 := count(), cpuOf(procs), backendsCPU(o.database)
		select {
		case <-time.After(o.idle):
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		}
		return count() - c0, cpuOf(procs) - cpu0, backendsCPU(o.database) - db0, nil
	}
	fl.csPaused.Store(true)
	if res.idlePolls, res.idleCPU, res.idleDB, err = measure(fl.idle304.Load); err != nil {
		return nil, err
	}
	fl.csPaused.Store(false)
	if res.crowdsec > 0 {
		if res.idleCSPull, res.idleCSCPU, res.idleCSDB, err = measure(fl.csPulls.Load); err != nil {
			return nil, err
		}
	}

	// The change.
	if err := admin.ingest(ctx, fl.target); err != nil {
		return nil, err
	}
	changed := time.Now()
	if err := until(ctx, 30*time.Second, func() bool { return fl.woken.Load() >= int64(o.n) }); err != nil {
		fmt.Fprintf(o.out, "only %d of %d bouncers got the change within 30s\n", fl.woken.Load(), o.n)
	}
	for _, p := range procs {
		v, err := (&adminClient{base: p.base, token: token, hc: admin.hc}).renderVersion(ctx, ruleset, 0)
		if err != nil {
			return nil, err
		}
		res.serverVersions = append(res.serverVersions, v)
	}
	stopPollers()
	wg.Wait()
	for i := range o.n {
		if fl.wakeAt[i].IsZero() {
			continue
		}
		d := max(0, fl.wakeAt[i].Sub(changed))
		if i < res.muninn {
			res.wake = append(res.wake, d)
			res.versions[fl.got[i]]++
		} else {
			res.csWake = append(res.csWake, d)
		}
	}
	for _, p := range procs {
		_, hwm, err := procStatus(p.pid())
		if err != nil {
			return nil, err
		}
		res.hwm = append(res.hwm, hwm)
	}
	res.errors, res.errSample = fl.errors.Load(), fl.errSample()
	for _, p := range procs {
		p.stop()
		b, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case !strings.Contains(line, "level=ERROR"):
			case strings.Contains(line, "context canceled"):
				res.logGone++
			default:
				res.logErrors++
				if res.logSample == "" {
					res.logSample = line
				}
			}
		}
	}
	procs = nil
	report(o, res)
	return res, nil
}

// report prints the figures of one run.
func report(o options, r *result) {
	w := o.out
	fmt.Fprintf(w, "fan-out: %d bouncers (%d long-polling /api/v1/bouncer/render with wait=%s, %d pulling /crowdsec/v1/decisions/stream every %s) on %d serve process(es), loopback\n",
		o.n, r.muninn, o.wait, r.crowdsec, o.csEvery, o.servers)
	var base, parked, hwm int64
	var gb, gp goStats
	for i := range r.rssBase {
		base, parked, hwm = base+r.rssBase[i], parked+r.rssParked[i], hwm+r.hwm[i]
		b, p := r.goBase[i], r.goParked[i]
		gb = goStats{gb.goroutines + b.goroutines, gb.heap + b.heap, gb.stack + b.stack}
		gp = goStats{gp.goroutines + p.goroutines, gp.heap + p.heap, gp.stack + p.stack}
		fmt.Fprintf(w, "  server %d: RSS %d MiB before the bouncers, %d MiB with them parked, peak (VmHWM) %d MiB; Go heap+stacks in use %d -> %d MiB; goroutines %.0f -> %.0f\n",
			i+1, r.rssBase[i]>>20, r.rssParked[i]>>20, r.hwm[i]>>20, int64(b.heap+b.stack)>>20, int64(p.heap+p.stack)>>20, b.goroutines, p.goroutines)
	}
	n := float64(o.n)
	fmt.Fprintf(w, "  memory: peak %d MiB in all (target <= 1024 MiB); per connected bouncer: %.1f KiB RSS, %.1f KiB Go heap+stacks in use, %.2f goroutines\n",
		hwm>>20, float64(parked-base)/n/1024, (gp.heap+gp.stack-gb.heap-gb.stack)/n/1024, (gp.goroutines-gb.goroutines)/n)
	if r.idlePolls > 0 {
		fmt.Fprintf(w, "  idle long poll: %d timed out and came back in %s, server CPU %s = %.0f µs per idle poll cycle (PostgreSQL backends: %.0f µs)\n",
			r.idlePolls, o.idle, r.idleCPU.Round(10*time.Millisecond), float64(r.idleCPU.Microseconds())/float64(r.idlePolls),
			float64(r.idleDB.Microseconds())/float64(r.idlePolls))
	} else {
		fmt.Fprintf(w, "  idle long poll: none came back within %s (-idle shorter than -wait); server CPU %s while %d waiters were parked\n",
			o.idle, r.idleCPU.Round(10*time.Millisecond), r.muninn)
	}
	if r.idleCSPull > 0 {
		// The long polls' own share of the second window is taken out at the
		// rate the first window measured.
		cs, db := r.idleCSCPU-r.idleCPU, r.idleCSDB-r.idleDB
		fmt.Fprintf(w, "  idle CrowdSec pull: %d in %s, server CPU %s (%s beyond the long polls) = %.0f µs per pull (PostgreSQL backends: %.0f µs)\n",
			r.idleCSPull, o.idle, r.idleCSCPU.Round(10*time.Millisecond), cs.Round(10*time.Millisecond), float64(max(0, cs).Microseconds())/float64(r.idleCSPull),
			float64(max(0, db).Microseconds())/float64(r.idleCSPull))
	}
	p50, p99, top := quantiles(r.wake)
	fmt.Fprintf(w, "  wake after one change (from the ingest's answer): long polls %d/%d, p50 %s p99 %s max %s (target p99 <= 2s)\n",
		len(r.wake), r.muninn, p50.Round(time.Millisecond), p99.Round(time.Millisecond), top.Round(time.Millisecond))
	if r.crowdsec > 0 {
		p50, p99, top = quantiles(r.csWake)
		fmt.Fprintf(w, "  wake CrowdSec (next pull that lists the address): %d/%d, p50 %s p99 %s max %s (cadence %s)\n",
			len(r.csWake), r.crowdsec, p50.Round(time.Millisecond), p99.Round(time.Millisecond), top.Round(time.Millisecond), o.csEvery)
	}
	fmt.Fprintf(w, "  versions: long polls ended on %v (version: bouncers); servers answer %v\n", r.versions, r.serverVersions)
	fmt.Fprintf(w, "  errors: %d", r.errors)
	if r.errors > 0 {
		fmt.Fprintf(w, " (e.g. %s)", r.errSample)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  server log: %d lines at ERROR", r.logErrors)
	if r.logSample != "" {
		fmt.Fprintf(w, " (e.g. %s)", r.logSample)
	}
	fmt.Fprintf(w, ", and %d more for a request whose client had gone (context canceled: the bouncers stopping)\n", r.logGone)
}

// fleet is the simulated bouncers' shared state.
type fleet struct {
	wait, csEvery time.Duration
	v0            int64  // the version before the change
	target        string // the address the change blocks
	wakeAt        []time.Time
	got           []int64 // the version a long poll ended on

	parked, csStarted, woken atomic.Int64
	idle304, csPulls         atomic.Int64
	csPaused                 atomic.Bool
	errors                   atomic.Int64
	firstErr                 atomic.Value
}

func (f *fleet) fail(err error) {
	f.errors.Add(1)
	f.firstErr.CompareAndSwap(nil, err.Error())
}

func (f *fleet) errSample() string {
	s, _ := f.firstErr.Load().(string)
	return s
}

// longPoll is a muninn bouncer: full render first, then long polls with the
// versions it has; parked counts it once its second request is on the wire.
func (f *fleet) longPoll(ctx context.Context, i int, base, key string, hc *http.Client) {
	c := bouncer.NewClient(base, key, hc).WithUserAgent("muninn-fanout")
	var since map[string]int64
	counted := false
	for ctx.Err() == nil {
		rctx := ctx
		if since != nil && !counted {
			counted = true
			rctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { f.parked.Add(1) }})
		}
		resp, notModified, err := c.Render(rctx, since, f.wait)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			f.fail(err)
			_ = sleep(ctx, time.Second)
			continue
		case notModified:
			f.idle304.Add(1)
			continue
		}
		if since == nil {
			since = map[string]int64{}
		}
		for _, r := range resp.Rulesets {
			since[r.Ruleset] = r.Version
			if r.Version > f.v0 && f.wakeAt[i].IsZero() {
				f.wakeAt[i], f.got[i] = time.Now(), r.Version
				f.woken.Add(1)
			}
		}
	}
}

// csPull is a CrowdSec bouncer in stream mode: startup=true once, then a pull
// every csEvery (the first at a random offset within it, as bouncers started
// at different times would be).
func (f *fleet) csPull(ctx context.Context, i int, base, key string, hc *http.Client) {
	pull := func(startup bool) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/crowdsec/v1/decisions/stream?startup=%t", base, startup), nil)
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("User-Agent", "crowdsec-firewall-bouncer/v0.0.31")
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return false, fmt.Errorf("crowdsec stream: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		var doc struct {
			New []struct {
				Value string `json:"value"`
			} `json:"new"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return false, fmt.Errorf("crowdsec stream: %w", err)
		}
		for _, d := range doc.New {
			if d.Value == f.target || d.Value == f.target+"/32" {
				return true, nil
			}
		}
		return false, nil
	}
	for {
		if _, err := pull(true); err == nil {
			break
		} else if ctx.Err() != nil {
			return
		} else {
			f.fail(err)
			_ = sleep(ctx, time.Second)
		}
	}
	f.csStarted.Add(1)
	_ = sleep(ctx, time.Duration(i*7919%1000)*f.csEvery/1000)
	t := time.NewTicker(f.csEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f.csPaused.Load() {
			continue
		}
		hit, err := pull(false)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			f.fail(err)
			continue
		}
		f.csPulls.Add(1)
		if hit && f.wakeAt[i].IsZero() {
			f.wakeAt[i] = time.Now()
			f.woken.Add(1)
		}
	}
}

// transport dials from loopback source address number a (127.1.x.y).
func transport(a int) *http.Transport {
	local := &net.TCPAddr{IP: net.IPv4(127, 1, byte(a/250), byte(a%250+1))}
	d := &net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}
	return &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute, ForceAttemptHTTP2: false}
}

// server is one `muninn serve` process this program started.
type server struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
	log  string // its stderr
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the process: SIGTERM, then SIGKILL after 10 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// goStats are a server's goroutines and the bytes of heap spans and
// goroutine stacks in use (go_memstats_heap_inuse_bytes,
// go_memstats_stack_inuse_bytes), from its /metrics.
type goStats struct{ goroutines, heap, stack float64 }

func (s *server) goStats(ctx context.Context) (goStats, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return goStats{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return goStats{}, err
	}
	var g goStats
	for name, dst := range map[string]*float64{"go_goroutines": &g.goroutines, "go_memstats_heap_inuse_bytes": &g.heap, "go_memstats_stack_inuse_bytes": &g.stack} {
		v, ok := gaugeValue(string(b), name)
		if !ok {
			return goStats{}, errors.New("no " + name + " in /metrics")
		}
		*dst = v
	}
	return g, nil
}

// settle waits (up to 30 s) until the server's goroutine count stops
// growing, the sign that the requests sent have parked, and returns it.
func settle(ctx context.Context, s *server) goStats {
	last := goStats{goroutines: -1}
	for range 60 {
		g, err := s.goStats(ctx)
		if err == nil && g.goroutines == last.goroutines {
			return g
		}
		last = g
		_ = sleep(ctx, 500*time.Millisecond)
	}
	return last
}

// startServer runs `muninn serve` on url with the first admin token, on a
// free loopback port, and waits until /readyz answers.
func startServer(ctx context.Context, bin, url, token, dataDir string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "MUNINN_DATABASE_URL="+url, "MUNINN_ADMIN_TOKEN="+token, "MUNINN_LISTEN="+addr,
		"MUNINN_DATA_DIR="+dataDir, "MUNINN_WORKERS=false", "MUNINN_RDAP=false", "MUNINN_RDNS=false", "MUNINN_LOG_LEVEL=warn")
	logf, err := os.Create(dataDir + ".log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()                        // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = io.Discard, logf // stdout is the banner
	// The server dies with this program whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://" + addr, done: make(chan struct{}), log: logf.Name()}
	go func() { _ = cmd.Wait(); close(s.done) }()
	err = until(ctx, 2*time.Minute, func() bool {
		select {
		case <-s.done:
			return true
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-s.done:
		b, _ := os.ReadFile(s.log)
		return nil, fmt.Errorf("muninn serve exited: %v: %s", cmd.ProcessState, b)
	default:
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("muninn serve on %s not ready: %w", addr, err)
	}
	return s, nil
}

// adminClient calls the admin API of one server.
type adminClient struct {
	base, token string
	hc          *http.Client
}

func (a *adminClient) do(ctx context.Context, method, path, ctype, body string, want int, out any) error {
	req, _ := http.NewRequestWithContext(ctx, method, a.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (a *adminClient) ingest(ctx context.Context, ip string) error {
	return a.do(ctx, http.MethodPost, "/api/v1/ingest", "application/x-ndjson",
		`{"ip":"`+ip+`","source":"fanout","tags":["fanout"],"classification":"malicious"}`+"\n", http.StatusOK, nil)
}

// renderVersion waits until the ruleset's render is above since and returns
// its version.
func (a *adminClient) renderVersion(ctx context.Context, ruleset string, since int64) (int64, error) {
	var v int64
	var last error
	err := until(ctx, time.Minute, func() bool {
		var doc struct {
			Version int64 `json:"version"`
		}
		last = a.do(ctx, http.MethodGet, "/api/v1/rulesets/"+ruleset+"/render", "", "", http.StatusOK, &doc)
		v = doc.Version
		return last == nil && v > since
	})
	if err != nil {
		return 0, fmt.Errorf("render of %s on %s: %v (%w)", ruleset, a.base, last, err)
	}
	return v, nil
}

// bouncers registers n bouncers bound to ruleset, 8 requests at a time,
// and returns their keys.
func (a *adminClient) bouncers(ctx context.Context, n int, ruleset string) ([]string, error) {
	keys := make([]string, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var out struct {
				Key string `json:"key"`
			}
			body := fmt.Sprintf(`{"name":"fanout-%05d","rulesets":[%q]}`, i, ruleset)
			if err := a.do(ctx, http.MethodPost, "/api/v1/bouncers", "application/json", body, http.StatusCreated, &out); err != nil {
				errs <- err
				return
			}
			keys[i] = out.Key
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("register bouncers: %w", err)
	}
	return keys, nil
}

// database creates name on the server at admin (dropping a leftover one)
// and returns its URL and the drop; when admin does not answer it starts an
// embedded PostgreSQL under dir instead.
func database(ctx context.Context, admin, name, dir string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		cl, err := pgembed.Start(ctx, pgembed.Options{Dir: filepath.Join(dir, "pg")})
		if err != nil {
			return "", nil, err
		}
		return cl.URL(), func() { _ = cl.Stop(context.Background()) }, nil
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	for _, q := range []string{`DROP DATABASE IF EXISTS ` + ident + ` WITH (FORCE)`, `CREATE DATABASE ` + ident} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return "", nil, err
		}
	}
	cfg := conn.Config()
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	return u, func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`)
			_ = c.Close(context.Background())
		}
	}, nil
}

// raiseNoFile raises this process's open-file limit to its hard limit (the
// servers started inherit it) and fails when that is below need.
func raiseNoFile(need uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Max < need {
		return fmt.Errorf("open-file hard limit %d is below the %d this run needs (ulimit -Hn)", l.Max, need)
	}
	l.Cur = l.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// cpuOf is the CPU time the servers have used so far.
func cpuOf(procs []*server) time.Duration {
	var t time.Duration
	for _, p := range procs {
		c, _ := procCPU(p.pid())
		t += c
	}
	return t
}

// backendsCPU is the CPU time PostgreSQL's backend processes connected to
// database have used, found by their process title ("postgres: USER
// DATABASE HOST(PORT) STATE"); zero for an embedded cluster run as another
// user whose /proc entries cannot be read.
func backendsCPU(database string) time.Duration {
	dirs, _ := os.ReadDir("/proc")
	var t time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		title, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !isBackendOf(string(title), database) {
			continue
		}
		c, _ := procCPU(pid)
		t += c
	}
	return t
}

// isBackendOf says whether a process title (/proc/PID/cmdline) is a
// PostgreSQL backend connected to database: "postgres: [CLUSTER: ]USER
// DATABASE HOST(PORT) STATE" (the cluster name when cluster_name is set).
func isBackendOf(title, database string) bool {
	f := strings.Fields(strings.ReplaceAll(title, "\x00", " "))
	if len(f) < 3 || f[0] != "postgres:" {
		return false
	}
	if strings.HasSuffix(f[1], ":") {
		f = f[1:]
	}
	return len(f) >= 3 && f[2] == database
}

// moduleRoot is the directory of go.mod (go env GOMOD), so the build works
// from anywhere inside the repository.
func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "."
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// until polls cond every 50 ms until it holds, ctx ends or limit passes.
func until(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
