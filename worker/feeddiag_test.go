package worker_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/feed"
)

// utf16LE encodes ASCII s as UTF-16LE, with the byte-order mark when bom.
func utf16LE(s string, bom bool) []byte {
	var out []byte
	if bom {
		out = append(out, 0xFF, 0xFE)
	}
	for _, c := range []byte(s) {
		out = append(out, c, 0)
	}
	return out
}

// TestFeedRunKeepsRejectedLines: a run lists the first 100 rejected lines
// (line number, text cut to 200 bytes, reason) and counts them all.
func TestFeedRunKeepsRejectedLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var body strings.Builder
	body.WriteString("198.51.100.1\n")
	body.WriteString("nope\n")
	body.WriteString("198.51.100.2 extra\n")
	body.WriteString(strings.Repeat("x", 300) + "\n")
	for range 120 {
		body.WriteString("bad\n")
	}
	b.srv.set("r", []byte(body.String()))
	b.putFeed(t, store.Feed{Name: "r", Format: "list", Tag: "r", Enabled: true})
	run, err := worker.RefreshFeed(b.ctx, b.deps, "r", false)
	require.NoError(t, err)
	require.Equal(t, store.RunOK, run.Status)
	require.EqualValues(t, 1, run.Entries)
	require.EqualValues(t, 123, run.Rejected)

	runs, err := b.st.FeedRuns(b.ctx, "r", 1)
	require.NoError(t, err)
	got := runs[0].RejectedLines
	require.Len(t, got, 100)
	require.Equal(t, []store.RejectedLine{
		{Line: 2, Text: "nope", Reason: `invalid address "nope"`},
		{Line: 3, Text: "198.51.100.2 extra", Reason: `unexpected text "extra" after address`},
		{Line: 4, Text: strings.Repeat("x", 200) + "…", Reason: `invalid address "` + strings.Repeat("x", 300) + `"`},
		{Line: 5, Text: "bad", Reason: `invalid address "bad"`},
	}, got[:4])
	require.Equal(t, store.RejectedLine{Line: 101, Text: "bad", Reason: `invalid address "bad"`}, got[99])
}

// TestFeedRunFailsWithoutAcceptedLine: a body whose every line is rejected
// fails with the first reasons and changes nothing; UTF-16 and HTML bodies
// are named as such.
func TestFeedRunFailsWithoutAcceptedLine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.set("f", []byte("198.51.100.1\n198.51.100.2\n"))
	b.putFeed(t, store.Feed{Name: "f", Format: "list", Tag: "f", Enabled: true})
	_, err := worker.RefreshFeed(b.ctx, b.deps, "f", false)
	require.NoError(t, err)
	require.Len(t, b.stored(t, "f"), 2)

	for _, tc := range []struct {
		name string
		body []byte
		want string
		rej  []store.RejectedLine
	}{
		{"rejected", []byte("a\nb\n# comment\nc\nd\n"),
			`worker: refresh feed f: no line accepted: 4 rejected; line 1: invalid address "a"; line 2: invalid address "b"; line 4: invalid address "c"; ...`,
			[]store.RejectedLine{{Line: 1, Text: "a", Reason: `invalid address "a"`}, {Line: 2, Text: "b", Reason: `invalid address "b"`},
				{Line: 4, Text: "c", Reason: `invalid address "c"`}, {Line: 5, Text: "d", Reason: `invalid address "d"`}}},
		{"utf16-bom", utf16LE("198.51.100.3\r\n", true), "worker: refresh feed f: feed: parse list: body is UTF-16; convert to UTF-8", []store.RejectedLine{}},
		{"utf16-nul", utf16LE("198.51.100.3\r\n", false), "worker: refresh feed f: feed: parse list: body is UTF-16; convert to UTF-8", []store.RejectedLine{}},
		{"utf16-be", append([]byte{0xFE, 0xFF}, utf16LE("198.51.100.3", false)...), "worker: refresh feed f: feed: parse list: body is UTF-16; convert to UTF-8", []store.RejectedLine{}},
		{"html", []byte("\n  <!DOCTYPE html>\n<html><body>Service unavailable</body></html>\n"), "worker: refresh feed f: feed: parse list: body is an HTML page, not a feed", []store.RejectedLine{}},
		{"html-bare", []byte("<HTML>\n<p>login</p>\n"), "worker: refresh feed f: feed: parse list: body is an HTML page, not a feed", []store.RejectedLine{}},
	} {
		b.srv.set("f", tc.body)
		run, err := worker.RefreshFeed(b.ctx, b.deps, "f", false)
		require.EqualError(t, err, tc.want, tc.name)
		require.Equal(t, store.RunFailed, run.Status, tc.name)
		runs, err := b.st.FeedRuns(b.ctx, "f", 1)
		require.NoError(t, err)
		require.Equal(t, store.RunFailed, runs[0].Status, tc.name)
		require.Equal(t, tc.want, runs[0].Error, tc.name)
		require.Equal(t, tc.rej, runs[0].RejectedLines, tc.name)
		require.Len(t, b.stored(t, "f"), 2, "%s: the feed's entries stay", tc.name)
		f, err := b.st.FeedByName(b.ctx, "f")
		require.NoError(t, err)
		require.Equal(t, tc.want, f.LastError, tc.name)
	}
	require.ErrorIs(t, feed.SniffBody([]byte("<html>")), feed.ErrHTML)
}
