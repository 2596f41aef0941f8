package ui_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/alert"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/index/indextest"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/server/store/storetest"
	"github.com/muninn/muninn/server/ui"
)

type testBundle struct {
	srv   *httptest.Server
	store *store.Store
	ix    *index.Index
}

// catchUp applies the test's own writes to the store to the index, as a
// process following the change feed would within milliseconds.
func (b *testBundle) catchUp(t *testing.T) {
	t.Helper()
	require.NoError(t, b.ix.CatchUp(context.Background()))
}

type testOpts struct {
	baseURL string
	now     func() time.Time
	trusted []netip.Prefix
	version string
	sealer  *alert.Sealer
}

func setup(t *testing.T, opts ...testOpts) *testBundle {
	t.Helper()
	var o testOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	st := storetest.Store(t)
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ix := indextest.Start(t, st, log, nil)
	if o.now == nil {
		o.now = time.Now
	}
	h, err := ui.New(ui.Deps{Store: st, Index: ix, Logger: log, Now: o.now, BaseURL: o.baseURL, TrustedProxies: o.trusted, Version: o.version, AlertSealer: o.sealer})
	require.NoError(t, err)
	r := chi.NewRouter()
	h.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	for _, role := range []string{"reader", "writer", "admin"} {
		hash, err := ui.HashPassword(role + "-password")
		require.NoError(t, err)
		_, err = st.CreateUser(ctx, role, role, hash, "test")
		require.NoError(t, err)
	}
	return &testBundle{srv: srv, store: st, ix: ix}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// client is a browser: a cookie jar, redirects not followed.
type client struct {
	t    *testing.T
	b    *testBundle
	http *http.Client
}

func (b *testBundle) client(t *testing.T) *client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &client{t: t, b: b, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (c *client) get(path string) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.http.Get(c.b.srv.URL + path)
	require.NoError(c.t, err)
	return resp, readBody(c.t, resp)
}

func (c *client) post(path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.http.PostForm(c.b.srv.URL+path, form)
	require.NoError(c.t, err)
	return resp, readBody(c.t, resp)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	require.NotNil(t, m, "no CSRF field in the page")
	return m[1]
}

// login logs in as user and returns the answer to the POST.
func (c *client) login(user, password string) (*http.Response, string) {
	c.t.Helper()
	_, page := c.get("/ui/login")
	return c.post("/ui/login", url.Values{"csrf": {csrfOf(c.t, page)}, "username": {user}, "password": {password}})
}

func (c *client) mustLogin(user string) {
	c.t.Helper()
	resp, body := c.login(user, user+"-password")
	require.Equal(c.t, http.StatusSeeOther, resp.StatusCode, body)
}

func TestLoginOK(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	resp, _ := c.get("/ui/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/login?next=%2Fui%2F", resp.Header.Get("Location"))

	resp, _ = c.login("reader", "reader-password")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "muninn_session" {
			session = ck
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, session.SameSite)
	require.False(t, session.Secure, "plain HTTP without an https base URL")

	resp, body := c.get("/ui/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "<h1>Dashboard</h1>")
	require.Contains(t, body, "reader <small>(reader)</small>")
}

func TestLoginSecureCookieBehindHTTPS(t *testing.T) {
	t.Parallel()
	b := setup(t, testOpts{baseURL: "https://muninn.example"})
	resp, _ := b.client(t).login("admin", "admin-password")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	found := false
	for _, ck := range resp.Cookies() {
		if ck.Name == "muninn_session" {
			found = true
			require.True(t, ck.Secure)
		}
	}
	require.True(t, found)
}

func TestLoginBad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	resp, body := c.login("reader", "wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "Wrong username or password.")
	resp, body = c.login("nobody", "wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "Wrong username or password.")
	resp, _ = c.get("/ui/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "no session after a failed login")
}

// manualClock is a clock the test moves.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Five failures in a row are free; after that each failure doubles the wait
// before the next attempt, from any address, and the right password works
// again once the wait is over (slowed, never locked out).
func TestLoginRateLimited(t *testing.T) {
	t.Parallel()
	clock := &manualClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	b := setup(t, testOpts{now: clock.now})
	c := b.client(t)
	for range 5 {
		resp, _ := c.login("writer", "guess")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	resp, body := c.login("writer", "writer-password")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Contains(t, body, "Too many failed logins for this user. Wait 1 seconds, then try again.")
	// Another user is not slowed down.
	b.client(t).mustLogin("reader")

	clock.add(time.Second)
	resp, _ = c.login("writer", "guess") // the sixth failure: 2 s to wait
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	clock.add(time.Second)
	resp, _ = b.client(t).login("writer", "writer-password") // another browser, same user
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	clock.add(time.Second)
	c.mustLogin("writer")
	// A good login forgets the failures.
	resp, _ = b.client(t).login("writer", "guess")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestLoginThrottleRowsArePruned(t *testing.T) {
	t.Parallel()
	clock := &manualClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	b := setup(t, testOpts{now: clock.now})
	for _, name := range []string{"guess-1", "guess-2", "guess-3"} {
		resp, _ := b.client(t).login(name, "x")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	rows := func() int {
		var n int
		require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM login_throttle`).Scan(&n))
		return n
	}
	require.Equal(t, 3, rows())
	clock.add(15*time.Minute + time.Second)
	resp, _ := b.client(t).login("guess-4", "x")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, 1, rows(), "the three older names are forgotten")
}

// Usernames of any length used to be stored and logged.
func TestLoginRefusesNamesThatCannotExist(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, name := range []string{strings.Repeat("a", 65), "a b", "-admin", "adm\u00e9n", "x\x00"} {
		resp, body := b.client(t).login(name, "x")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, name)
		require.Contains(t, body, "Wrong username or password.")
	}
	var n int
	require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM login_throttle`).Scan(&n))
	require.Zero(t, n)
	require.True(t, ui.ValidUsername(strings.Repeat("a", 64)))
	require.True(t, ui.ValidUsername("ops@example.org"))
	require.False(t, ui.ValidUsername(strings.Repeat("a", 65)))
}

// The login token is signed: a pair the server did not make is refused.
func TestLoginForgedCSRFRefused(t *testing.T) {
	t.Parallel()
	clock := &manualClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	b := setup(t, testOpts{now: clock.now})
	c := b.client(t)
	u, err := url.Parse(b.srv.URL + "/ui/login")
	require.NoError(t, err)
	forged := "abc." + strconv.FormatInt(clock.now().Add(time.Hour).Unix(), 10) + ".bm90LWEtbWFj"
	c.http.Jar.SetCookies(u, []*http.Cookie{{Name: "muninn_login_csrf", Value: forged, Path: "/ui/login"}})
	resp, body := c.post("/ui/login", url.Values{"csrf": {forged}, "username": {"admin"}, "password": {"admin-password"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "security token (CSRF)")

	// A genuine token expires after an hour.
	_, page := c.get("/ui/login")
	tok := csrfOf(t, page)
	clock.add(time.Hour + time.Second)
	resp, _ = c.post("/ui/login", url.Values{"csrf": {tok}, "username": {"admin"}, "password": {"admin-password"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// Behind a trusted TLS-terminating proxy the session cookie is Secure; the
// same header from anyone else changes nothing.
func TestLoginSecureCookieThroughTrustedProxy(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		trusted []netip.Prefix
		secure  bool
	}{
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
		{nil, false},
	} {
		b := setup(t, testOpts{trusted: c.trusted})
		cl := b.client(t)
		_, page := cl.get("/ui/login")
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/ui/login", strings.NewReader(url.Values{"csrf": {csrfOf(t, page)},
			"username": {"admin"}, "password": {"admin-password"}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := cl.http.Do(req)
		require.NoError(t, err)
		readBody(t, resp)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		var secure *bool
		for _, ck := range resp.Cookies() {
			if ck.Name == "muninn_session" {
				secure = &ck.Secure
			}
		}
		require.NotNil(t, secure)
		require.Equal(t, c.secure, *secure)
		var ip string
		require.NoError(t, b.store.Pool().QueryRow(context.Background(), `SELECT ip FROM sessions`).Scan(&ip))
		if c.secure {
			require.Equal(t, "198.51.100.7", ip, "the client behind the trusted proxy")
		} else {
			require.Equal(t, "127.0.0.1", ip, "an untrusted peer's X-Forwarded-For is ignored")
		}
	}
}

func TestLoginWithoutCSRFRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	resp, body := c.post("/ui/login", url.Values{"username": {"admin"}, "password": {"admin-password"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "security token (CSRF)")
}

func TestLogout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	c.mustLogin("reader")
	_, page := c.get("/ui/")
	resp, _ := c.post("/ui/logout", url.Values{"csrf": {csrfOf(t, page)}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, _ = c.get("/ui/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

func overrideForm(csrf, prefix string) url.Values {
	return url.Values{"csrf": {csrf}, "page": {prefix}, "prefix": {prefix}, "classification": {"malicious"},
		"add_tags": {"scanner, ssh"}, "suppress_tags": {""}, "note": {"seen on the honeypot"}, "expires": {"7d"}}
}

func TestOverrideWithoutCSRFRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	c.mustLogin("writer")
	form := overrideForm("", "192.0.2.7")
	form.Set("confirm", "yes")
	resp, body := c.post("/ui/override", form)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "security token (CSRF)")
	form.Set("csrf", "forged")
	resp, _ = c.post("/ui/override", form)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	b.catchUp(t)
	_, ok := b.ix.Snapshot().Lookup(netip.MustParseAddr("192.0.2.7"))
	require.False(t, ok, "nothing stored")
}

func TestRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reader := b.client(t)
	reader.mustLogin("reader")
	_, page := reader.get("/ui/ips/192.0.2.7")
	require.NotContains(t, page, `action="/ui/override"`, "readers get no override form")
	form := overrideForm(csrfOf(t, page), "192.0.2.7")
	form.Set("confirm", "yes")
	resp, body := reader.post("/ui/override", form)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "needs the writer role")
	resp, _ = reader.get("/ui/tokens")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	writer := b.client(t)
	writer.mustLogin("writer")
	resp, _ = writer.get("/ui/tokens")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	admin := b.client(t)
	admin.mustLogin("admin")
	resp, page = admin.get("/ui/tokens")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = admin.post("/ui/tokens", url.Values{"csrf": {csrfOf(t, page)}, "name": {"cowrie"}, "role": {"writer"}, "expires": {""}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Regexp(t, `value="mnn_[a-z0-9]+"`, body, "the secret is shown once")
	ts, err := b.store.Tokens(context.Background())
	require.NoError(t, err)
	require.Len(t, ts, 1)
	resp, _ = admin.post("/ui/tokens/"+strconv.FormatInt(ts[0].ID, 10)+"/revoke", url.Values{"csrf": {csrfOf(t, body)}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, body = admin.get("/ui/tokens")
	require.Contains(t, body, "Token revoked.")
	require.NotContains(t, body, "<td>cowrie</td>")
}

func TestOverrideThroughTheForm(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	c.mustLogin("writer")
	_, page := c.get("/ui/ips/192.0.2.7")
	require.Contains(t, page, `id="classification">unknown<`)
	csrf := csrfOf(t, page)

	// The first POST only shows what will change.
	resp, body := c.post("/ui/override", overrideForm(csrf, "192.0.2.7"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "Confirm override of")
	require.Contains(t, body, `id="new-classification">malicious<`)
	require.Contains(t, body, `<span class="tag">scanner</span>`)
	b.catchUp(t)
	_, ok := b.ix.Snapshot().Lookup(netip.MustParseAddr("192.0.2.7"))
	require.False(t, ok, "nothing stored before confirmation")

	form := overrideForm(csrf, "192.0.2.7")
	form.Set("confirm", "yes")
	resp, _ = c.post("/ui/override", form)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/ips/192.0.2.7", resp.Header.Get("Location"))

	v, ok := b.ix.Snapshot().Lookup(netip.MustParseAddr("192.0.2.7"))
	require.True(t, ok, "the UI caught the index up before redirecting")
	require.Equal(t, "malicious", v.Classification)
	require.Equal(t, "manual:writer", v.ClassificationSource)
	require.Equal(t, []string{"scanner", "ssh"}, v.TagNames())

	_, page = c.get("/ui/ips/192.0.2.7")
	require.Contains(t, page, "Override saved for 192.0.2.7.")
	require.Contains(t, page, `id="classification">malicious<`)
	require.Contains(t, page, "override.put")

	// A whole network, then its delete.
	form = overrideForm(csrfOf(t, page), "198.51.100.0/24")
	form.Set("page", "192.0.2.7/32")
	resp, body = c.post("/ui/override", form)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "every address in 198.51.100.0/24")
	form.Set("confirm", "yes")
	resp, _ = c.post("/ui/override", form)
	require.Equal(t, "/ui/networks/198.51.100.0/24", resp.Header.Get("Location"))
	_, page = c.get("/ui/ips/198.51.100.9")
	require.Contains(t, page, `id="classification">malicious<`)
	resp, _ = c.post("/ui/override/delete", url.Values{"csrf": {csrfOf(t, page)}, "prefix": {"198.51.100.0/24"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, page = c.get("/ui/ips/198.51.100.9")
	require.Contains(t, page, `id="classification">unknown<`)
}

func TestOverrideBadInputShowsItsError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	c.mustLogin("writer")
	_, page := c.get("/ui/ips/192.0.2.7")
	form := overrideForm(csrfOf(t, page), "192.0.2.7")
	form.Set("expires", "soon")
	form.Set("confirm", "yes")
	resp, body := c.post("/ui/override", form)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, body, `<p class="field-error" id="expires-error">Use a lifetime such as 90m, 24h or 7d`)
	require.Contains(t, body, `value="soon"`, "the typed value is kept")
	require.Contains(t, body, `value="scanner, ssh"`)

	form = overrideForm(csrfOf(t, page), "198.51.100.1/24")
	form.Set("page", "192.0.2.7/32")
	resp, body = c.post("/ui/override", form)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, body, `id="prefix-error">`)
	require.Contains(t, body, "did you mean 198.51.100.0/24?")

	b.catchUp(t)
	_, ok := b.ix.Snapshot().Lookup(netip.MustParseAddr("192.0.2.7"))
	require.False(t, ok, "nothing stored")
}

func TestPagesRender(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, b.store.Ingest(ctx, []store.Observation{
		{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Source: "ingest:cowrie", Tags: []string{"honeypot"}, Classification: "suspicious", SeenAt: now},
		{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Source: "ingest:cowrie", Tags: []string{"honeypot"}, SeenAt: now},
	}, "test"))
	b.catchUp(t)
	c := b.client(t)
	c.mustLogin("admin")
	for path, want := range map[string]string{
		"/ui/":                        "Sightings per day",
		"/ui/search?q=203.0.113.0/24": "203.0.113.9",
		"/ui/search?q=honeypot":       "203.0.113.5",
		"/ui/search?q=suspicious":     "203.0.113.5",
		"/ui/networks/203.0.113.0/24": "Stored prefixes inside 203.0.113.0/24",
		"/ui/tags":                    "honeypot",
		"/ui/audit?actor=test":        "user.create",
		"/ui/audit?actor=nobody":      "No entries.",
		"/ui/feeds":                   "No feeds.",
		"/ui/tokens":                  "New token",
		"/ui/ips/203.0.113.5":         "ingest:cowrie",
	} {
		resp, body := c.get(path)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Regexp(t, `^app;dur=\d+\.\d$`, resp.Header.Get("Server-Timing"), path)
		require.Contains(t, body, want, path)
	}
	resp, _ := c.get("/ui/search?q=203.0.113.5")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/ips/203.0.113.5", resp.Header.Get("Location"))
	resp, body := c.get("/ui/search?q=203.0.113.1/24")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "host bits set")
	resp, _ = c.get("/ui/ips/not-an-ip")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, body = c.get("/ui/audit?since=yesterday")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "Since must be a date")
}

func TestSearchPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var obs []store.Observation
	for i := range 60 {
		obs = append(obs, store.Observation{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 32),
			Source: "ingest:scan", Tags: []string{"scanner"}, SeenAt: time.Now()})
	}
	require.NoError(t, b.store.Ingest(context.Background(), obs, "test"))
	b.catchUp(t)
	c := b.client(t)
	c.mustLogin("reader")
	_, body := c.get("/ui/search?q=scanner")
	require.Equal(t, 50, strings.Count(body, `<td><a href="/ui/ips/`))
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(body)
	require.NotNil(t, next)
	require.NotContains(t, body, "First page")
	_, body = c.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	require.Equal(t, 10, strings.Count(body, `<td><a href="/ui/ips/`))
	require.Contains(t, body, "198.18.0.59")
	require.NotContains(t, body, `rel="next"`)
	require.Contains(t, body, "First page")
}

// A feed URL's secrets (user info, query values) are not shown on its page.
func TestFeedPageRedactsTheURL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.PutFeed(context.Background(), store.Feed{Name: "keyed", URL: "https://user:pa55@e.org/list?license_key=topsecret",
		Format: "list", Tag: "keyed", Enabled: true}, "test")
	require.NoError(t, err)
	c := b.client(t)
	c.mustLogin("reader")
	resp, body := c.get("/ui/feeds/keyed")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "https://xxxxx:xxxxx@e.org/list?license_key=xxxxx")
	require.NotContains(t, body, "topsecret")
	require.NotContains(t, body, "pa55")
}

// NUL or invalid UTF-8 in a page's address is a 400, as in the API.
func TestPageParametersMustBeText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.client(t)
	c.mustLogin("reader")
	for _, path := range []string{"/ui/feeds/a%00b", "/ui/search?q=%FF", "/ui/rulesets/x%FFy", "/ui/audit?actor=a%00"} {
		resp, body := c.get(path)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
		require.Contains(t, body, "The address of this page is not valid", path)
	}
}

// TestUsersPage: an admin changes another user's role, disables them (their
// session ends at once), enables and deletes them; readers and writers get
// no page, and an admin cannot change their own account.
func TestUsersPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	writer := b.client(t)
	writer.mustLogin("writer")
	resp, _ := writer.get("/ui/users")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	admin := b.client(t)
	admin.mustLogin("admin")
	resp, page := admin.get("/ui/users")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, "<td>writer</td><td>writer</td>")
	require.Contains(t, page, `action="/ui/users/writer/disable"`)
	require.NotContains(t, page, `action="/ui/users/admin/`, "no actions on one's own row")
	csrf := csrfOf(t, page)
	do := func(path string, form url.Values, flash string) {
		t.Helper()
		form.Set("csrf", csrf)
		resp, body := admin.post(path, form)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
		_, page := admin.get("/ui/users")
		require.Contains(t, page, flash)
	}

	do("/ui/users/writer/role", url.Values{"role": {"reader"}}, "writer is now reader.")
	_, page = admin.get("/ui/users")
	require.Contains(t, page, "<td>writer</td><td>reader</td>")
	resp, _ = writer.get("/ui/")
	require.Equal(t, http.StatusOK, resp.StatusCode, "a role change keeps the session")

	do("/ui/users/writer/disable", url.Values{}, "writer is disabled; their sessions have ended.")
	resp, _ = writer.get("/ui/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the disabled user's session ended at once")
	require.Equal(t, "/ui/login?next=%2Fui%2F", resp.Header.Get("Location"))
	resp, _ = writer.login("writer", "writer-password")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a disabled user cannot log in")
	_, page = admin.get("/ui/users")
	require.Contains(t, page, `action="/ui/users/writer/enable"`)

	do("/ui/users/writer/enable", url.Values{}, "writer is enabled.")
	writer.mustLogin("writer")
	do("/ui/users/writer/delete", url.Values{}, "writer is deleted; their sessions have ended.")
	resp, _ = writer.get("/ui/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the deleted user's session ended at once")
	_, page = admin.get("/ui/users")
	require.NotContains(t, page, "<td>writer</td>")
	do("/ui/users/writer/disable", url.Values{}, "There is no user named writer (any more).")

	resp, body := admin.post("/ui/users/admin/disable", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "You cannot change your own account here")
	resp, body = admin.post("/ui/users/reader/role", url.Values{"csrf": {csrf}, "role": {"root"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, body, "Choose reader, writer or admin.")
	resp, _ = admin.post("/ui/users/reader/disable", url.Values{})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token, no change")
	u, err := b.store.UserByName(context.Background(), "reader")
	require.NoError(t, err)
	require.Nil(t, u.DisabledAt)
}

// TestFeedPageListsRejectedLines: the feed page lists the newest run's
// rejected lines (number, text, reason), escaped.
func TestFeedPageListsRejectedLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.store.PutFeed(ctx, store.Feed{Name: "bad", URL: "https://e.org/list", Format: "list", Tag: "bad", Enabled: true}, "test")
	require.NoError(t, err)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	_, err = b.store.RecordFeedRun(ctx, store.FeedRun{Feed: "bad", StartedAt: at, FinishedAt: at, Status: store.RunFailed, Lines: 2, Rejected: 2,
		Error:         `worker: refresh feed bad: no line accepted: 2 rejected; line 1: invalid address "<script>"`,
		RejectedLines: []store.RejectedLine{{Line: 1, Text: "<script>", Reason: `invalid address "<script>"`}, {Line: 7, Text: "nope", Reason: `invalid address "nope"`}}})
	require.NoError(t, err)
	c := b.client(t)
	c.mustLogin("reader")
	resp, body := c.get("/ui/feeds/bad")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "2 lines rejected; the first 2 (of at most 100 kept) are listed.")
	require.Contains(t, body, `<tr><td>1</td><td class="mono">&lt;script&gt;</td><td>invalid address &#34;&lt;script&gt;&#34;</td></tr>`)
	require.Contains(t, body, `<tr><td>7</td><td class="mono">nope</td><td>invalid address &#34;nope&#34;</td></tr>`)
	require.NotContains(t, body, "<script>")
}

// TestAddressPageShowsLookups: the address page shows the last RDAP and PTR
// attempt with its outcome and error.
func TestAddressPageShowsLookups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	addr := netip.MustParseAddr("198.51.100.44")
	require.NoError(t, b.store.Ingest(ctx, []store.Observation{{Prefix: netip.PrefixFrom(addr, 32), Source: "ingest:test", SeenAt: time.Now()}}, "test"))
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	require.NoError(t, b.store.RecordEnrichAttempt(ctx, store.EnrichRDAP, addr, at, store.EnrichError, "rdap: query 198.51.100.44 at arin: 503 Service Unavailable"))
	require.NoError(t, b.store.RecordEnrichAttempt(ctx, store.EnrichPTR, addr, at, store.EnrichSkipped, "not looked up: special-use: documentation (RFC 5737, RFC 3849) (MUNINN_ENRICH_SPECIAL=on allows it)"))
	c := b.client(t)
	c.mustLogin("reader")
	resp, body := c.get("/ui/ips/198.51.100.44")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<td class="bad">error: rdap: query 198.51.100.44 at arin: 503 Service Unavailable</td>`)
	require.Contains(t, body, `<td>skipped: not looked up: special-use: documentation (RFC 5737, RFC 3849) (MUNINN_ENRICH_SPECIAL=on allows it)</td>`)
	require.Contains(t, body, `<td>RDAP</td>`)
	require.Contains(t, body, `<td>PTR</td>`)
}
