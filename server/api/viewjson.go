package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
)

// viewResponse is the 200 answer of GET /ips/{address} and GET
// /networks/{address}/{bits}: the generated wire type apigen.View, written
// byte for byte as the generated responses write it (encoding/json's
// Encoder.Encode, trailing newline included) but without reflection, without
// time.Time's MarshalJSON allocations and into a pooled buffer. The lookup is
// the hottest path of the API (DESIGN §8: 5,000 req/s at p99 ≤ 5 ms);
// TestViewJSONMatchesEncodingJSON proves the bytes equal encoding/json's for
// random views and fails when the contract adds a field this encoder does not
// write.
type viewResponse struct{ v *apigen.View }

// VisitGetIPResponse implements apigen.GetIPResponseObject.
func (r viewResponse) VisitGetIPResponse(w http.ResponseWriter) error { return r.write(w) }

// VisitGetNetworkResponse implements apigen.GetNetworkResponseObject.
func (r viewResponse) VisitGetNetworkResponse(w http.ResponseWriter) error { return r.write(w) }

var viewBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (r viewResponse) write(w http.ResponseWriter) error {
	bp := viewBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			viewBuffers.Put(bp)
		}
	}()
	b, ok := appendView((*bp)[:0], r.v)
	if !ok {
		// A value outside what the fast path writes exactly (a time
		// outside years 0–9999): encoding/json decides, errors included.
		raw, err := json.Marshal(r.v)
		if err != nil {
			return err
		}
		b = append(append(b[:0], raw...), '\n')
	}
	*bp = b
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	return err
}

// appendView appends v as encoding/json encodes it, with a newline; false
// when a value needs encoding/json's own judgement (the caller falls back).
func appendView(b []byte, v *apigen.View) ([]byte, bool) {
	e := viewEncoder{b: b, ok: true}
	e.raw(`{`)
	if v.Address != nil {
		e.key(`"address":`)
		e.str(*v.Address)
		e.raw(`,`)
	}
	e.raw(`"asn":{`)
	e.first = true
	e.optStr(`"network":`, v.Asn.Network)
	if v.Asn.Number != nil {
		e.sep()
		e.raw(`"number":`)
		e.b = strconv.AppendInt(e.b, *v.Asn.Number, 10)
	}
	e.optStr(`"organization":`, v.Asn.Organization)
	e.optStr(`"source":`, v.Asn.Source)
	e.raw(`},"classification":`)
	e.str(string(v.Classification))
	e.first = false
	if v.ClassificationPrefix != nil {
		e.raw(`,"classification_prefix":`)
		e.str(*v.ClassificationPrefix)
	}
	if v.ClassificationSource != nil {
		e.raw(`,"classification_source":`)
		e.str(*v.ClassificationSource)
	}
	if v.Enrichment != nil {
		e.raw(`,"enrichment":`)
		if *v.Enrichment == nil {
			e.raw(`null`)
		} else {
			e.raw(`[`)
			for i, s := range *v.Enrichment {
				if i > 0 {
					e.raw(`,`)
				}
				e.raw(`{"attempted_at":`)
				e.time(s.AttemptedAt)
				if s.Error != nil {
					e.raw(`,"error":`)
					e.str(*s.Error)
				}
				e.raw(`,"kind":`)
				e.str(string(s.Kind))
				e.raw(`,"outcome":`)
				e.str(string(s.Outcome))
				e.raw(`}`)
			}
			e.raw(`]`)
		}
	}
	if v.FirstSeen != nil {
		e.raw(`,"first_seen":`)
		e.time(*v.FirstSeen)
	}
	e.raw(`,"geo":{`)
	e.first = true
	e.optStr(`"city":`, v.Geo.City)
	e.optStr(`"continent":`, v.Geo.Continent)
	e.optStr(`"country":`, v.Geo.Country)
	e.optStr(`"network":`, v.Geo.Network)
	e.optStr(`"source":`, v.Geo.Source)
	e.raw(`},"hostnames":`)
	if v.Hostnames == nil {
		e.raw(`null`)
	} else {
		e.raw(`[`)
		for i, h := range v.Hostnames {
			if i > 0 {
				e.raw(`,`)
			}
			e.raw(`{"last_seen":`)
			e.time(h.LastSeen)
			e.raw(`,"name":`)
			e.str(h.Name)
			e.raw(`,"source":`)
			e.str(h.Source)
			e.raw(`}`)
		}
		e.raw(`]`)
	}
	if v.LastSeen != nil {
		e.raw(`,"last_seen":`)
		e.time(*v.LastSeen)
	}
	if v.Network != nil {
		e.raw(`,"network":`)
		e.str(*v.Network)
	}
	if v.Note != nil {
		e.raw(`,"note":`)
		e.str(*v.Note)
	}
	e.raw(`,"passive_dns":`)
	if v.PassiveDns == nil {
		e.raw(`null`)
	} else {
		e.raw(`[`)
		for i, pd := range v.PassiveDns {
			if i > 0 {
				e.raw(`,`)
			}
			e.raw(`{`)
			if pd.Client != nil {
				e.raw(`"client":`)
				e.str(*pd.Client)
				e.raw(`,`)
			}
			e.raw(`"first_seen":`)
			e.time(pd.FirstSeen)
			e.raw(`,"last_seen":`)
			e.time(pd.LastSeen)
			e.raw(`,"name":`)
			e.str(pd.Name)
			e.raw(`,"seen":`)
			e.b = strconv.AppendInt(e.b, pd.Seen, 10)
			e.raw(`}`)
		}
		e.raw(`]`)
	}
	e.raw(`,"prefixes":`)
	if v.Prefixes == nil {
		e.raw(`null`)
	} else {
		e.raw(`[`)
		for i, p := range v.Prefixes {
			if i > 0 {
				e.raw(`,`)
			}
			e.raw(`{"assertions":`)
			if p.Assertions == nil {
				e.raw(`null`)
			} else {
				e.raw(`[`)
				for j, a := range p.Assertions {
					if j > 0 {
						e.raw(`,`)
					}
					e.raw(`{`)
					if a.ExpiresAt != nil {
						e.raw(`"expires_at":`)
						e.time(*a.ExpiresAt)
						e.raw(`,`)
					}
					e.raw(`"first_seen":`)
					e.time(a.FirstSeen)
					e.raw(`,"kind":`)
					e.str(string(a.Kind))
					e.raw(`,"last_seen":`)
					e.time(a.LastSeen)
					e.raw(`,"source":`)
					e.str(a.Source)
					e.raw(`,"value":`)
					e.str(a.Value)
					e.raw(`}`)
				}
				e.raw(`]`)
			}
			e.raw(`,"first_seen":`)
			e.time(p.FirstSeen)
			e.raw(`,"last_seen":`)
			e.time(p.LastSeen)
			e.raw(`,"prefix":`)
			e.str(p.Prefix)
			e.raw(`,"sightings":`)
			e.b = strconv.AppendInt(e.b, p.Sightings, 10)
			e.raw(`}`)
		}
		e.raw(`]`)
	}
	e.raw(`,"rdap":{`)
	e.first = true
	e.optStr(`"abuse_email":`, v.Rdap.AbuseEmail)
	e.optStr(`"country":`, v.Rdap.Country)
	if v.Rdap.FetchedAt != nil {
		e.sep()
		e.raw(`"fetched_at":`)
		e.time(*v.Rdap.FetchedAt)
	}
	e.optStr(`"handle":`, v.Rdap.Handle)
	e.optStr(`"name":`, v.Rdap.Name)
	e.optStr(`"network":`, v.Rdap.Network)
	e.optStr(`"org":`, v.Rdap.Org)
	e.optStr(`"registry":`, v.Rdap.Registry)
	e.raw(`},"sightings":`)
	e.b = strconv.AppendInt(e.b, v.Sightings, 10)
	e.raw(`,"sources":`)
	if v.Sources == nil {
		e.raw(`null`)
	} else {
		e.raw(`[`)
		for i, s := range v.Sources {
			if i > 0 {
				e.raw(`,`)
			}
			e.str(s)
		}
		e.raw(`]`)
	}
	e.raw(`,"suppressed_tags":`)
	e.tagFacts(v.SuppressedTags)
	e.raw(`,"tags":`)
	e.tagFacts(v.Tags)
	e.raw("}\n")
	return e.b, e.ok
}

// viewEncoder appends JSON; ok turns false when a value must go through
// encoding/json instead.
type viewEncoder struct {
	b     []byte
	ok    bool
	first bool // no member written yet in the current object
}

func (e *viewEncoder) raw(s string) { e.b = append(e.b, s...) }

func (e *viewEncoder) key(s string) { e.b = append(e.b, s...) }

// sep writes the comma before an object's member unless it is the first.
func (e *viewEncoder) sep() {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
}

func (e *viewEncoder) optStr(key string, s *string) {
	if s == nil {
		return
	}
	e.sep()
	e.raw(key)
	e.str(*s)
}

// str appends s as a JSON string. Plain printable ASCII is copied; anything
// else (escapes, HTML characters, which encoding/json escapes, non-ASCII,
// invalid UTF-8) is left to encoding/json so the bytes stay its bytes.
func (e *viewEncoder) str(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			raw, err := json.Marshal(s)
			if err != nil {
				e.ok = false
				return
			}
			e.b = append(e.b, raw...)
			return
		}
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

// time appends t as time.Time.MarshalJSON does (RFC 3339 with nanoseconds);
// a time MarshalJSON would refuse (a year outside 0–9999, an offset of a
// day or more) or round (an offset with seconds) goes to encoding/json.
func (e *viewEncoder) time(t time.Time) {
	_, off := t.Zone()
	if y := t.Year(); y < 0 || y > 9999 || off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		e.ok = false
		return
	}
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

func (e *viewEncoder) tagFacts(ts []apigen.TagFact) {
	if ts == nil {
		e.raw(`null`)
		return
	}
	e.raw(`[`)
	for i, t := range ts {
		if i > 0 {
			e.raw(`,`)
		}
		e.raw(`{`)
		if t.ExpiresAt != nil {
			e.raw(`"expires_at":`)
			e.time(*t.ExpiresAt)
			e.raw(`,`)
		}
		e.raw(`"first_seen":`)
		e.time(t.FirstSeen)
		e.raw(`,"last_seen":`)
		e.time(t.LastSeen)
		e.raw(`,"name":`)
		e.str(t.Name)
		e.raw(`,"prefix":`)
		e.str(t.Prefix)
		e.raw(`,"source":`)
		e.str(t.Source)
		e.raw(`}`)
	}
	e.raw(`]`)
}
