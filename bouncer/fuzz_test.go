package bouncer_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/bouncer"
)

// protocolSeeds are bouncer protocol messages: a full render, a delta, and
// the wide prefixes of issue 12.
func protocolSeeds() [][]byte {
	full, _ := json.Marshal(bouncer.RenderResponse{Rulesets: []bouncer.Render{render(1)}, Removed: []string{}})
	wide := render(2)
	wide.Default = "block"
	wide.Rules[0].V4 = []string{"0.0.0.0/0"}
	wide.Rules[0].V6 = []string{"::/0"}
	wideRaw, _ := json.Marshal(bouncer.RenderResponse{Rulesets: []bouncer.Render{wide}})
	delta, _ := json.Marshal(bouncer.RenderResponse{Rulesets: []bouncer.Render{{Ruleset: "traefik", Version: 2, Delta: true, BaseVersion: 1,
		Rules: []bouncer.RenderRule{{ID: 1, AddV4: []string{"203.0.113.10/32"}, DelV4: []string{"203.0.113.9/32"}}}}}})
	return [][]byte{full, wideRaw, delta,
		[]byte(`{"rulesets":[{"ruleset":"x","version":1,"hook":"input","default":"block","rules":[{"id":1,"action":"block","v4":["::ffff:0:0/96"],"v6":[]}]}],"removed":[]}`),
		[]byte(`{"rulesets":[{"ruleset":"x","version":1,"hook":"forward","rules":[{"id":1,"action":"throttle","rate":"0/second","v4":["192.0.2.0/33"]}]}]}`),
		[]byte(`{}`), []byte(`null`), []byte(`{"rulesets":null}`),
	}
}

// FuzzRenderResponse: whatever the server answers, a render either becomes
// a ruleset state the bouncer can lay out and save, or is refused with an
// error; an accepted one round-trips through its wire form.
func FuzzRenderResponse(f *testing.F) {
	for _, s := range protocolSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp bouncer.RenderResponse
		if json.Unmarshal(b, &resp) != nil {
			return
		}
		st := &bouncer.State{}
		for _, r := range resp.Rulesets {
			if r.Delta {
				continue
			}
			rs, err := bouncer.NewRulesetState(r)
			if err != nil {
				continue
			}
			again, err := bouncer.NewRulesetState(rs.Render())
			require.NoError(t, err)
			require.Equal(t, rs.Render(), again.Render())
			st = st.With(rs)
		}
		for _, r := range resp.Rulesets {
			if cur := st.Ruleset(r.Ruleset); r.Delta && cur != nil {
				_, _, _ = cur.ApplyDelta(r) // errors are fine; panics are not
			}
		}
		if _, err := bouncer.BuildLayout("muninn", -10, 1, st, nil); err != nil {
			return
		}
		var sb bytes.Buffer
		require.NoError(t, bouncer.NewDryRun(&sb, "muninn", -10, nil).Apply(t.Context(), st))
	})
}

// FuzzLoadState: a state file with any content is loaded or refused with an
// error, never half-loaded; what loads saves and loads back the same.
func FuzzLoadState(f *testing.F) {
	for _, s := range protocolSeeds() {
		f.Add(s)
	}
	f.Add([]byte("{\"rulesets\":[")) // a file cut short by a full disk
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, bouncer.StateFileName), b, 0o600))
		st, err := bouncer.LoadState(dir)
		if err != nil {
			require.Nil(t, st)
			return
		}
		require.NoError(t, bouncer.SaveState(dir, st))
		again, err := bouncer.LoadState(dir)
		require.NoError(t, err)
		require.Equal(t, st.Applied(), again.Applied())
		for _, rs := range st.Rulesets {
			require.Equal(t, rs.Render(), again.Ruleset(rs.Name).Render())
		}
	})
}

// FuzzSpoolBatch: any spool file decodes or is refused without a panic, and
// what decodes encodes back to the same bytes.
func FuzzSpoolBatch(f *testing.F) {
	f.Add(bouncer.EncodeSpoolBatch("sshd", []string{"Nov 30 23:01:02 gw sshd[1]: Failed password for root from 203.0.113.9 port 2 ssh2"}))
	f.Add(bouncer.EncodeSpoolBatch("nginx", nil))
	f.Add([]byte("muninn-spool 1\nsshd\nline"))
	f.Add([]byte("muninn-spool 1\n\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		format, lines, err := bouncer.DecodeSpoolBatch(raw)
		if err != nil {
			return
		}
		require.Equal(t, raw, bouncer.EncodeSpoolBatch(format, lines))
	})
}
