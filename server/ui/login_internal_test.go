package ui

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store/storetest"
)

// gatedChecks replaces the password check with one that reports each entry
// and waits for the test to let it finish, counting the checks in flight.
type gatedChecks struct {
	entered, release chan struct{}
	inFlight, max    atomic.Int32
	total            atomic.Int32
}

func (g *gatedChecks) check(string, string) bool {
	n := g.inFlight.Add(1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
	g.total.Add(1)
	g.entered <- struct{}{}
	<-g.release
	g.inFlight.Add(-1)
	return false
}

// drive lets n checks through, never more than slots at once, and makes
// sure slots of them were running at the same time.
func (g *gatedChecks) drive(n, slots int) {
	for range slots {
		<-g.entered
	}
	for range n - slots {
		g.release <- struct{}{}
		<-g.entered
	}
	for range slots {
		g.release <- struct{}{}
	}
}

var csrfField_ = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// loginConcurrently sends one wrong-password login per name at once and
// returns the count of answers by status.
func loginConcurrently(t *testing.T, srv *httptest.Server, names []string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar}
			resp, err := c.Get(srv.URL + "/ui/login")
			if !assertNoError(t, err) {
				return
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := csrfField_.FindSubmatch(page)
			resp, err = c.PostForm(srv.URL+"/ui/login", url.Values{"csrf": {string(m[1])}, "username": {name}, "password": {"wrong"}})
			if !assertNoError(t, err) {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	return waitStatuses(&wg, &mu, statuses)
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func waitStatuses(wg *sync.WaitGroup, mu *sync.Mutex, m map[int]int) map[int]int {
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return m
}

func loginServer(t *testing.T, now func() time.Time) (*httptest.Server, *gatedChecks) {
	t.Helper()
	st := storetest.Store(t)
	log := slog.New(slog.DiscardHandler)
	ix := indextest.Start(t, st, log, nil)
	h, err := New(Deps{Store: st, Index: ix, Logger: log, Now: now, LoginHashConcurrency: 2})
	require.NoError(t, err)
	g := &gatedChecks{entered: make(chan struct{}), release: make(chan struct{})}
	h.check = g.check
	r := chi.NewRouter()
	h.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, g
}

// 40 concurrent wrong passwords for one user were all evaluated (19 MiB of
// argon2 each): now 5 claim an attempt before any hashing, the other 35 are
// told to wait, and at most 2 hashes run at once.
func TestLoginConcurrentGuessesForOneUser(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	srv, g := loginServer(t, func() time.Time { return at })
	names := make([]string, 40)
	for i := range names {
		names[i] = "admin"
	}
	done := make(chan map[int]int)
	go func() { done <- loginConcurrently(t, srv, names) }()
	g.drive(5, 2)
	require.Equal(t, map[int]int{http.StatusUnauthorized: 5, http.StatusTooManyRequests: 35}, <-done)
	require.EqualValues(t, 5, g.total.Load())
	require.EqualValues(t, 2, g.max.Load())
}

// From 40 names at once every attempt is checked, but never more than 2 at a
// time.
func TestLoginHashesAreBounded(t *testing.T) {
	t.Parallel()
	srv, g := loginServer(t, time.Now)
	names := make([]string, 40)
	for i := range names {
		names[i] = "user-" + strconv.Itoa(i)
	}
	done := make(chan map[int]int)
	go func() { done <- loginConcurrently(t, srv, names) }()
	g.drive(40, 2)
	require.Equal(t, map[int]int{http.StatusUnauthorized: 40}, <-done)
	require.EqualValues(t, 40, g.total.Load())
	require.EqualValues(t, 2, g.max.Load())
}
