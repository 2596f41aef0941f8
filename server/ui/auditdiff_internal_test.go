package ui

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0", 90 * time.Minute: "1h30m", 24 * time.Hour: "1d", 36 * time.Hour: "1d12h", 90 * time.Second: "1m30s",
		30 * time.Second: "30s", 1500 * time.Millisecond: "1s500ms", 250 * time.Millisecond: "250ms", -2 * time.Hour: "-2h",
		720 * time.Hour: "30d",
	} {
		require.Equal(t, want, humanDuration(d), "%d", d)
	}
}

func TestAuditDiff(t *testing.T) {
	t.Parallel()
	got, err := auditDiff(json.RawMessage(`{"name":"drop","ttl":3600000000000,"crowdsec":{"expand":"off","v4_bits":24},"tags":["a"],"on":true}`),
		json.RawMessage(`{"name":"drop","ttl":5400000000000,"crowdsec":{"expand":"always","v4_bits":24},"tags":["a","b"],"note":"x"}`))
	require.NoError(t, err)
	require.Equal(t, []auditChange{
		{Field: "crowdsec.expand", Old: "off", New: "always"},
		{Field: "note", Old: "", New: "x"},
		{Field: "on", Old: "yes", New: ""},
		{Field: "tags", Old: "a", New: "a, b"},
		{Field: "ttl", Old: "1h", New: "1h30m"},
	}, got)
	got, err = auditDiff(nil, nil)
	require.NoError(t, err)
	require.Empty(t, got)
	_, err = auditDiff(json.RawMessage(`{`), nil)
	require.Error(t, err)
}

// FuzzAuditDiff: any stored value diffs without panicking, and a value
// compared with itself has no change.
func FuzzAuditDiff(f *testing.F) {
	f.Add([]byte(`{"name":"drop","ttl":3600000000000,"crowdsec":{"expand":"off"},"tags":["a"]}`), []byte(`["edge","other"]`))
	f.Add([]byte(`{"expires_at":"2026-12-01T09:30:15.123456789Z","a":{"b":{"c":null}}}`), []byte(`null`))
	f.Add([]byte(`[]`), []byte(`{"schedule":-1e30}`))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		if _, err := auditDiff(before, after); err != nil {
			return
		}
		same, err := auditDiff(before, before)
		require.NoError(t, err)
		require.Empty(t, same)
	})
}
