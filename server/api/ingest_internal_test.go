package api

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-faster/jx"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api/apigen"
)

// hugeElement is a JSON array whose second element is a note of n bytes,
// produced as it is read, counting what was read.
type hugeElement struct {
	head, tail string
	n, read    int64
}

func (h *hugeElement) Read(p []byte) (int, error) {
	total := int64(len(h.head)) + h.n + int64(len(h.tail))
	if h.read >= total {
		return 0, io.EOF
	}
	i := 0
	for ; i < len(p) && h.read < total; i++ {
		switch {
		case h.read < int64(len(h.head)):
			p[i] = h.head[h.read]
		case h.read < int64(len(h.head))+h.n:
			p[i] = 'a'
		default:
			p[i] = h.tail[h.read-int64(len(h.head))-h.n]
		}
		h.read++
	}
	return i, nil
}

// One 95 MB array element raised memory by 540 MB before it was refused; it
// is now refused once it passes the 1 MiB cap, having read little more.
func TestIngestArrayElementIsCappedLikeALine(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, nil, time.Now, Options{})
	body := &hugeElement{head: `[{"ip":"nope"}, {"ip":"198.51.100.1","note":"`, n: 95 << 20, tail: `"}]`}
	resp, err := s.Ingest(context.Background(), apigen.IngestRequestObject{Body: body})
	require.NoError(t, err)
	res, ok := resp.(apigen.Ingest200JSONResponse)
	require.True(t, ok, "%T", resp)
	require.EqualValues(t, 0, res.Accepted)
	require.EqualValues(t, 2, res.Rejected)
	require.Equal(t, int64(1), res.Errors[0].Line)
	require.Equal(t, apigen.IngestError{Line: 2, Reason: "element longer than 1048576 bytes; the rest of the array was not read"}, res.Errors[1])
	require.Less(t, body.read, int64(2<<20), "bytes read of the 95 MB body")
	t.Logf("read %d bytes of a %d-byte body", body.read, int64(len(body.head))+body.n+int64(len(body.tail)))
}

// FuzzDecodeLine: the ingest line decoder never panics, and what it accepts
// is canonical and storable text (no NUL, valid UTF-8, bounded).
func FuzzDecodeLine(f *testing.F) {
	for _, s := range []string{
		`{"ip":"198.51.100.7","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious","note":"from the honeypot"}`,
		`{"ip":"203.0.113.77/24","source":"netflow","tags":["scanner"],"ttl":"24h"}`,
		`{"ip":"::ffff:198.51.100.9","tags":["x"],"ttl":-5}`,
		`{"ip":"2001:db8::1","seen_at":"2026-01-02T03:04:05Z","ttl":3600}`,
		`{"ip":"198.51.100.1","note":"a\u0000b"}`,
		"{\"ip\":\"198.51.100.2\",\"note\":\"caf\xe9\"}",
		"\ufeff{\"ip\":\"198.51.100.3\"}",
		`{"ip":"198.51.100.8","colour":"red"}`,
		`{"ip":"198.51.100.1","tags":["a\u0000b"]}`,
		`{"ip":"0.0.0.0/0","source":"x","tags":["scanner"]}`,
		`{"ip":"fe80::1%eth0"}`,
		`{"ip":"198.51.100.1"} {}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	s := New(nil, nil, nil, time.Now, Options{})
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, bad := s.decodeLine(raw, "fuzz", now, false)
		if bad != nil {
			require.NotEmpty(t, bad.Reason)
			return
		}
		require.True(t, o.Prefix.IsValid())
		require.Equal(t, o.Prefix.Masked(), o.Prefix)
		require.False(t, o.Prefix.Addr().Is4In6())
		require.True(t, strings.HasPrefix(o.Source, "ingest:"))
		for _, txt := range append([]string{o.Source, o.Note, o.Classification}, o.Tags...) {
			require.True(t, utf8.ValidString(txt), "%q", txt)
			require.NotContains(t, txt, "\x00")
		}
		require.LessOrEqual(t, len(o.Note), 4000)
		require.False(t, o.SeenAt.After(now.Add(5*time.Minute)))
		if o.ExpiresAt != nil {
			require.True(t, o.ExpiresAt.After(o.SeenAt))
		}
	})
}

// FuzzDecodeFastAgrees: whatever the fast ingest line decoder accepts,
// encoding/json (decodeStrict) accepts too and decodes to the same value.
func FuzzDecodeFastAgrees(f *testing.F) {
	for _, s := range []string{
		`{"ip":"198.51.100.7","source":"cowrie","tags":["ssh-bruteforce"],"classification":"malicious","note":"from the honeypot"}`,
		`{"ip":"203.0.113.77/24","source":"netflow","tags":["scanner"],"ttl":"24h"}`,
		`{"ip":"::ffff:198.51.100.9","tags":[],"ttl":-5}`,
		`{"ip":"2001:db8::1","seen_at":"2026-01-02T03:04:05Z","ttl":3600} `,
		`{"ip":"2001:db8::1","seen_at":"2026-01-02T03:04:05.5+01:00","ttl": 1e3}`,
		`{"ip":"198.51.100.1","IP":"198.51.100.2"}`,
		`{"ip":"198.51.100.1","ip":"198.51.100.2"}`,
		`{"ip":"198.51.100.1","seen_at":null,"tags":null,"ttl":null}`,
		`{"ip":"198.51.100.1","note":"a\u00e9b"}`,
		`{"ip":"198.51.100.8","colour":"red"}`,
		`{"ip":"198.51.100.1"} {}`,
		`{"ip":"198.51.100.1"}x`,
		`{"ip":5}`,
		`[]`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fast observation
		if !decodeFast(raw, &fast) {
			return
		}
		var slow observation
		require.NoError(t, decodeStrict(raw, &slow), "%q", raw)
		require.Equal(t, slow, fast, "%q", raw)
	})
}

func TestDecodeFastTakesTheCommonShape(t *testing.T) {
	t.Parallel()
	var o observation
	require.True(t, decodeFast([]byte(`{"ip":"198.51.100.7","source":"load","tags":["scanner"],"classification":"suspicious","seen_at":"2026-01-02T03:04:05Z","ttl":"24h","note":"n"}`+"\r\n"), &o))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.Equal(t, observation{IP: "198.51.100.7", Source: "load", Tags: []string{"scanner"}, Classification: "suspicious", SeenAt: &at, TTL: json.RawMessage(`"24h"`), Note: "n"}, o)
	for _, s := range []string{`{"ip":"198.51.100.1"} {}`, `{"IP":"198.51.100.1"}`, `{"ip":"198.51.100.1","ip":"198.51.100.2"}`, `{"note":"\u00e9"}`, `{"ttl":null}`, `{"ip":5}`} {
		require.False(t, decodeFast([]byte(s), new(observation)), s)
	}
}

// FuzzDecodeStrictKeys: a line decodeStrict accepts is one JSON object
// whose keys are an observation's fields spelled exactly, each once
// (encoding/json alone matched keys ignoring case and kept the last of
// two), and the EventLine decoder likewise.
func FuzzDecodeStrictKeys(f *testing.F) {
	for _, s := range []string{
		`{"ip":"198.51.100.1","IP":"198.51.100.2"}`,
		`{"Ip":"198.51.100.1"}`,
		`{"ip":"198.51.100.1","ip":"198.51.100.2"}`,
		`{"ip":"198.51.100.1","tags":["a",1]}`,
		`{"format":"sshd","LINE":"x"}`,
		`{"format":"sshd","line":"x","host":"gw"}`,
		`{"\u0069p":"198.51.100.1"}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	exact := func(t *testing.T, raw []byte, fields []string) {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &m), "%q", raw)
		d := jx.DecodeBytes(raw)
		n := 0
		require.NoError(t, d.ObjBytes(func(d *jx.Decoder, key []byte) error {
			n++
			require.Contains(t, fields, string(key), "%q", raw)
			return d.Skip()
		}), "%q", raw)
		require.Equal(t, len(m), n, "a key given twice: %q", raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var o observation
		if decodeStrict(raw, &o) == nil {
			exact(t, raw, observationLine.fields)
		}
		var el eventLine
		if eventLineObject.decode(raw, &el) == nil {
			exact(t, raw, eventLineObject.fields)
		}
	})
}
