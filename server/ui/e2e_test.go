package ui_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
)

// chromium finds a Chromium binary. Without one the test skips, unless CI is
// set: CI must run the browser tests, so there it fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium binary on PATH and CI is set: run .ci/install-chromium (make deps)")
	}
	t.Skip("no chromium binary on PATH; run .ci/install-chromium to enable the browser tests")
	return ""
}

// artifactsDir is <repo>/artifacts/ui, where screenshots go.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, parent, dir, "no go.mod above the test")
		dir = parent
	}
	out := filepath.Join(dir, "artifacts", "ui")
	require.NoError(t, os.MkdirAll(out, 0o755))
	return out
}

// browser starts a headless Chromium with a fresh profile and returns a
// context driving one tab; it is stopped when the test ends.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(bcancel)
	require.NoError(t, chromedp.Do(bctx), "start chromium") // now, so a failure names the browser
	return bctx
}

// screenshot saves the full page as artifacts/ui/name.png.
func screenshot(dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		buf, err := chromedp.FullScreenshot(100)(ctx, t)
		if err != nil {
			return fmt.Errorf("screenshot %s: %w", name, err)
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
	})
}

// text returns the text of the first element matching the CSS selector sel.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err, sel)
	return s
}

// seed stores a little of everything the pages show.
func seed(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	var obs []store.Observation
	for i := range 40 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)})
		tags := []string{"honeypot"}
		cls := "suspicious"
		if i%3 == 0 {
			tags, cls = append(tags, "ssh-bruteforce"), "malicious"
		}
		if i%5 == 0 {
			tags = append(tags, "Redtail Cryptobot")
		}
		for d := range i % 7 {
			obs = append(obs, store.Observation{Prefix: netip.PrefixFrom(a, 32), Source: "ingest:cowrie", Tags: tags,
				Classification: cls, SeenAt: now.Add(-time.Duration(d*29+i) * time.Hour)})
		}
	}
	obs = append(obs, store.Observation{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Source: "feed:example", Tags: []string{"example-net"}, SeenAt: now})
	require.NoError(t, st.Ingest(ctx, obs, "test"))
	nets := []store.GeoNetwork{
		{Network: netip.MustParsePrefix("203.0.113.0/26"), Country: "NL", Continent: "EU", City: "Amsterdam", ASN: 64500, ASOrg: "Example Hosting BV"},
		{Network: netip.MustParsePrefix("203.0.113.64/26"), Country: "US", Continent: "NA", ASN: 64501, ASOrg: "Example Cloud Inc"},
		{Network: netip.MustParsePrefix("192.0.2.0/24"), Country: "DE", Continent: "EU", City: "Berlin", ASN: 64502, ASOrg: "Beispiel GmbH"},
	}
	_, err := st.ReplaceGeoNetworks(ctx, "test-geo", func(yield func(store.GeoNetwork, error) bool) {
		for _, n := range nets {
			if !yield(n, nil) {
				return
			}
		}
	})
	require.NoError(t, err)
	require.NoError(t, st.PutRDAPNetwork(ctx, store.RDAPNetwork{Network: netip.MustParsePrefix("192.0.2.0/24"), Handle: "NET-192-0-2-0-1",
		Name: "TEST-NET-1", Org: "Internet Assigned Numbers Authority", Country: "US", AbuseEmail: "abuse@example.net", Registry: "arin", FetchedAt: now}))
	require.NoError(t, st.PutHostnames(ctx, netip.MustParseAddr("192.0.2.7"), "ptr", []string{"scanner7.example.net"}, now))
	_, _, err = st.PutRuleset(ctx, "ssh", "ruleset ssh\n  hook input\n  scope tcp dport 22\n  block classification malicious\n  block tag ssh-bruteforce and not country US\n  allow cidr 192.0.2.0/24\n", []byte(`{}`), "test")
	require.NoError(t, err)
	_, err = st.CreateBouncer(ctx, "gw1", []string{"ssh"}, store.HashSecret("gw1-key"), "test")
	require.NoError(t, err)
}

// TestBrowser drives the UI in headless Chromium: log in, search an address,
// override it through the form and its confirmation, see the view change, see
// a bad field's error, and see a form without its CSRF token refused.
func TestBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seed(t, b.store)
	b.catchUp(t)
	shots := artifactsDir(t)
	ctx := browser(t, 1280, 900)
	u := b.srv.URL
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, actions...), what)
	}

	run("log in",
		chromedp.Navigate(u+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		screenshot(shots, "login"),
		chromedp.SendKeys(chromedp.CSS(`#username`), "writer"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "writer-password"),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart`)),
		screenshot(shots, "dashboard"),
	)
	require.Equal(t, "Dashboard", text(t, ctx, "h1"))

	run("search an address",
		chromedp.SendKeys(chromedp.CSS(`#q-top`), "192.0.2.7"),
		chromedp.Submit(chromedp.CSS(`#q-top`)),
		chromedp.WaitVisible(chromedp.CSS(`#classification`)),
		screenshot(shots, "ip"),
	)
	require.Equal(t, "unknown", text(t, ctx, "#classification"))

	run("bad input shows its error",
		chromedp.SetValue(chromedp.CSS(`#classification-field`), "malicious"),
		chromedp.SendKeys(chromedp.CSS(`#add_tags`), "scanner"),
		chromedp.SendKeys(chromedp.CSS(`#expires`), "soon"),
		chromedp.Click(chromedp.CSS(`form[action="/ui/override"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#expires-error`)),
		screenshot(shots, "override-error"),
	)
	require.Contains(t, text(t, ctx, "#expires-error"), "Use a lifetime such as")

	run("override, confirm, see the view change",
		chromedp.SetValue(chromedp.CSS(`#expires`), "7d"),
		chromedp.Click(chromedp.CSS(`form[action="/ui/override"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#apply`)),
		screenshot(shots, "override-confirm"),
	)
	require.Equal(t, "malicious", text(t, ctx, "#new-classification"))
	run("apply",
		chromedp.Click(chromedp.CSS(`#apply`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash`)),
		screenshot(shots, "ip-overridden"),
	)
	require.Equal(t, "malicious", text(t, ctx, "#classification"))
	tags := text(t, ctx, "#tags")
	require.Contains(t, tags, "scanner")
	require.Contains(t, tags, "manual:writer")

	run("a form without its CSRF token is refused",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { const f = document.querySelector('form[action="/ui/override"]');
				f.querySelector('input[name=csrf]').remove(); f.submit(); return true; })()`)(ctx, tg)
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(`p.error`)),
		screenshot(shots, "csrf-refused"),
	)
	require.Contains(t, text(t, ctx, "main"), "security token (CSRF)")

	for name, path := range map[string]string{
		"network":  "/ui/networks/203.0.113.0/26",
		"search":   "/ui/search?q=honeypot",
		"tags":     "/ui/tags",
		"audit":    "/ui/audit",
		"feeds":    "/ui/feeds",
		"rulesets": "/ui/rulesets",
		"ruleset":  "/ui/rulesets/ssh?ip=203.0.113.4",
		"bouncers": "/ui/bouncers",
	} {
		run(name, chromedp.Navigate(u+path), chromedp.WaitVisible(chromedp.CSS(`h1`)), screenshot(shots, name))
		require.NotContains(t, strings.ToLower(text(t, ctx, "h1")), "error", path)
	}
}

// TestBrowserPhone renders the main pages at a phone's width.
func TestBrowserPhone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seed(t, b.store)
	b.catchUp(t)
	shots := artifactsDir(t)
	ctx := browser(t, 390, 844)
	u := b.srv.URL
	require.NoError(t, chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(u+"/ui/login"),
		chromedp.SendKeys(chromedp.CSS(`#username`), "admin"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "admin-password"),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart`)),
		screenshot(shots, "phone-dashboard"),
		chromedp.Navigate(u+"/ui/ips/203.0.113.4"),
		chromedp.WaitVisible(chromedp.CSS(`#classification`)),
		screenshot(shots, "phone-ip"),
		chromedp.Navigate(u+"/ui/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`#name`)),
		screenshot(shots, "phone-tokens"),
		chromedp.Navigate(u+"/ui/rulesets/ssh/edit"),
		chromedp.WaitVisible(chromedp.CSS(`#text`)),
		chromedp.SetValue(chromedp.CSS(`#text`), "ruleset ssh\n  hook input\n  block country\n"),
		chromedp.Click(chromedp.CSS(`button[value=preview]`)),
		chromedp.WaitVisible(chromedp.CSS(`#text-error`)),
		screenshot(shots, "phone-ruleset-error"),
	))
	width, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	require.NoError(t, err)
	require.LessOrEqual(t, width, 390, "no horizontal scrolling on a phone")
}
