package ui_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// TestBrowserFlows opens the inside hosts, a host's profile and a subnet's
// in headless Chromium: the charts render and the contact with the
// malicious address is listed.
func TestBrowserFlows(t *testing.T) {
	t.Parallel()
	b := setup(t, testOpts{now: func() time.Time { return flowNow }})
	seedFlows(t, b.store)
	b.catchUp(t)
	shots := artifactsDir(t)
	ctx := browser(t, 1280, 900)
	u := b.srv.URL
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(u+"/ui/login"),
		chromedp.SendKeys(chromedp.CSS(`#username`), "reader"),
		chromedp.SendKeys(chromedp.CSS(`#password`), "reader-password"),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#top-talkers svg.chart`)),
		screenshot(shots, "flows-dashboard"),
		chromedp.Navigate(u+"/ui/flows"),
		chromedp.WaitVisible(chromedp.CSS(`#hosts`)),
		screenshot(shots, "flows-hosts"),
		chromedp.Click(chromedp.CSS(`#hosts a[href="/ui/flows/hosts/10.0.0.5"]`)),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart.columns`)),
		screenshot(shots, "flows-host"),
	))
	require.Equal(t, "11160", text(t, ctx, "#bytes"))
	require.Contains(t, text(t, ctx, "#contacts tbody"), "203.0.113.66")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(u+"/ui/flows/networks/10.0.0.0/24"),
		chromedp.WaitVisible(chromedp.CSS(`#subnet-hosts`)),
		screenshot(shots, "flows-subnet"),
	))
	require.Equal(t, "11460", text(t, ctx, "#bytes"))
}
