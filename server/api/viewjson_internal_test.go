package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api/apigen"
)

// fill sets v (settable) to a random value of its type: every pointer, slice
// and field is sometimes nil or empty and usually set, so a field the
// contract adds to apigen.View shows up in encoding/json's bytes and not in
// appendView's.
func fill(t *testing.T, r *rand.Rand, v reflect.Value, strs []string) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(strs[r.IntN(len(strs))])
	case reflect.Int64:
		v.SetInt(r.Int64N(1<<40) - 1<<20)
	case reflect.Pointer:
		if r.IntN(4) == 0 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(t, r, p.Elem(), strs)
		v.Set(p)
	case reflect.Slice:
		switch r.IntN(5) {
		case 0:
			v.SetZero()
			return
		case 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return
		}
		n := 1 + r.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(t, r, s.Index(i), strs)
		}
		v.Set(s)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+30*60), time.FixedZone("y", -8*3600)}
			ts := time.Unix(r.Int64N(4e9), r.Int64N(1e9)*int64(r.IntN(2))).In(zones[r.IntN(len(zones))])
			v.Set(reflect.ValueOf(ts))
			return
		}
		for i := range v.NumField() {
			fill(t, r, v.Field(i), strs)
		}
	default:
		t.Fatalf("fill: no random values for %s (kind %s): teach fill and appendView the new field", v.Type(), v.Kind())
	}
}

// awkward are strings encoding/json escapes or replaces, and plain ones.
var awkward = []string{"", "192.0.2.0/24", "ingest:cowrie", "scanner", "a\"b", `back\slash`, "<script>&", "tab\there", "nul\x00", "ünïcode", "line\u2028sep", "bad\xffutf8", "ssh-bruteforce"}

func encodingJSON(t *testing.T, v *apigen.View) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, json.NewEncoder(&buf).Encode(v))
	return buf.Bytes()
}

func TestViewJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var v apigen.View
		fill(t, r, reflect.ValueOf(&v).Elem(), awkward)
		got, ok := appendView(nil, &v)
		require.True(t, ok, "view %d", i)
		require.Equal(t, string(encodingJSON(t, &v)), string(got), "view %d", i)
	}
}

func TestViewJSONFallsBackForTimesEncodingJSONRefuses(t *testing.T) {
	t.Parallel()
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	v := apigen.View{FirstSeen: &far}
	_, ok := appendView(nil, &v)
	require.False(t, ok)
	w := httptest.NewRecorder()
	require.Error(t, viewResponse{&v}.VisitGetIPResponse(w), "encoding/json refuses the year 10000; so does the response")

	odd := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("lmt", 3600+17))
	v = apigen.View{LastSeen: &odd}
	w = httptest.NewRecorder()
	require.NoError(t, viewResponse{&v}.VisitGetIPResponse(w))
	require.Equal(t, string(encodingJSON(t, &v)), w.Body.String())
	require.Equal(t, "application/json", w.Header().Get("Content-Type"))
	require.Equal(t, w.Body.Len(), int(mustAtoi(t, w.Header().Get("Content-Length"))))
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, json.Unmarshal([]byte(s), &n))
	return n
}

func BenchmarkViewJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	t := &testing.T{}
	var v apigen.View
	// Plain strings, as stored addresses, sources and tags are.
	fill(t, r, reflect.ValueOf(&v).Elem(), []string{"192.0.2.0/24", "ingest:cowrie", "scanner", "ssh-bruteforce", "malicious"})
	b.Run("appendView", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = appendView(buf[:0], &v)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var buf bytes.Buffer
			_ = json.NewEncoder(&buf).Encode(&v)
		}
	})
}
