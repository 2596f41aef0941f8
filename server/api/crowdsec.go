package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"go4.org/netipx"

	"github.com/muninn/muninn/server/render"
	"github.com/muninn/muninn/server/store"
)

// CrowdSecRoutes adds the CrowdSec-compatible bouncer API (mount at
// /crowdsec/v1): existing CrowdSec bouncers enforce the block rules of the
// rulesets bound to their muninn bouncer key. It speaks CrowdSec's LAPI
// dialect, errors included ({"message": "..."}, 403 for any key problem).
func (s *Server) CrowdSecRoutes(r chi.Router) {
	r.Use(s.crowdSecAuth)
	r.Get("/decisions/stream", s.crowdSecStream)
	r.Head("/decisions/stream", s.crowdSecHead)
	r.Get("/decisions", s.crowdSecDecisions)
	r.Head("/decisions", s.crowdSecHead)
	r.Post("/usage-metrics", s.crowdSecUsage)
}

// CrowdSecOrigin is the origin of every decision muninn serves.
const CrowdSecOrigin = "muninn"

// CrowdSecMaxDuration is the longest duration a decision carries: ipset
// refuses timeouts above 2147483 s. A decision's duration is the time left
// until its ban's end, rounded up to whole seconds, or this cap for a ban
// without one (or with one further away). Every decision is sent again as new
// once per CrowdSecRenewEvery (a quarter of the cap), so no bouncer that
// pulls at least that often lets a capped ban lapse.
//
// A ban's end is an upper bound (render.Expiries.End): the latest expiry of
// the live assertions on the stored prefixes containing the decision's
// prefix or inside it, when none of them lasts for good (no expiry) and the
// ruleset would not block any of its addresses without them (see
// render.DecisionSet.Lasting; rulesets with geo or list conditions never
// say). A source that changes one of those assertions (re-asserts a ban with
// a later expiry) has the decisions on that prefix sent again as new with
// their new durations at the next pull (the cursor is the facts' change-feed
// sequence), and a change of the rules' text has every decision sent again.
const CrowdSecMaxDuration = 2147483 * time.Second

// CrowdSecRenewEvery is the length of a renewal epoch: the first stream pull
// in a new epoch sends every decision again as new.
const CrowdSecRenewEvery = CrowdSecMaxDuration / 4

var maxDurationText = CrowdSecMaxDuration.String()

// csDecision is a CrowdSec LAPI decision.
type csDecision struct {
	ID        int64  `json:"id"`
	UUID      string `json:"uuid"`
	Origin    string `json:"origin"`
	Type      string `json:"type"`
	Scope     string `json:"scope"`
	Value     string `json:"value"`
	Scenario  string `json:"scenario"`
	Duration  string `json:"duration"`
	Simulated bool   `json:"simulated"`
}

// wireKey is a decision's scope and value as a bouncer holds it.
type wireKey struct {
	ip bool
	p  netip.Prefix
}

func (k wireKey) scope() string {
	if k.ip {
		return "Ip"
	}
	return "Range"
}

func (k wireKey) value() string {
	if k.ip {
		return k.p.Addr().String()
	}
	return k.p.String()
}

// newCSDecision is the decision of ruleset's rule (text scenario) on k; its
// id and uuid are a fixed function of the three, so they agree across
// restarts and processes.
func newCSDecision(ruleset, scenario string, k wireKey, duration string) csDecision {
	h := fnv.New128a()
	_, _ = io.WriteString(h, ruleset+"\x00"+scenario+"\x00"+k.scope()+"\x00"+k.value())
	sum := h.Sum(nil)
	return csDecision{
		// Positive and within a JSON-safe (53-bit) range.
		ID:     int64(binary.BigEndian.Uint64(sum[:8]) >> 11),
		UUID:   fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16]),
		Origin: CrowdSecOrigin, Type: "ban", Scope: k.scope(), Value: k.value(), Scenario: scenario, Duration: duration,
	}
}

// csRequest is what one stream pull asks for.
type csRequest struct {
	ip, rng bool // scopes
	// expand says Range decisions up to v4Bits/v6Bits become Ip decisions.
	expand         bool
	v4Bits, v6Bits int
	origins        []string
	scenIn, scenNo []string
	// exp bounds the durations at now (nil: every decision gets the cap).
	exp *render.Expiries
	now time.Time
	// durs keeps the durations computed (an expanded range asks once per
	// address).
	durs map[durKey]string
}

type durKey struct {
	set *render.DecisionSet
	p   netip.Prefix
}

// duration is the duration of set's decision on p: the time left until its
// end, in whole seconds rounded up (never shorter than the ban), or the cap.
func (q *csRequest) duration(set *render.DecisionSet, p netip.Prefix) string {
	if d, ok := q.durs[durKey{set, p}]; ok {
		return d
	}
	d := q.computeDuration(set, p)
	if q.durs == nil {
		q.durs = map[durKey]string{}
	}
	q.durs[durKey{set, p}] = d
	return d
}

func (q *csRequest) computeDuration(set *render.DecisionSet, p netip.Prefix) string {
	end, ok := q.exp.End(set, p)
	if !ok {
		return maxDurationText
	}
	d := end.Sub(q.now)
	if d > CrowdSecMaxDuration {
		return maxDurationText
	}
	if rem := d % time.Second; rem != 0 {
		d += time.Second - rem
	}
	// An end already past is one the facts have not caught up with yet: the
	// next render deletes the decision.
	return max(d, time.Second).String()
}

func (q *csRequest) key() string {
	return fmt.Sprintf("%t %t %t %d %d %q %q %q", q.ip, q.rng, q.expand, q.v4Bits, q.v6Bits, q.origins, q.scenIn, q.scenNo)
}

// expands reports whether Range decision p becomes Ip decisions.
func (q *csRequest) expands(p netip.Prefix) bool {
	if !q.expand {
		return false
	}
	if p.Addr().Is4() {
		return p.Bits() >= q.v4Bits
	}
	return p.Bits() >= q.v6Bits
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, strings.ToLower(s))
		}
	}
	return out
}

// parseCSRequest reads LAPI's stream parameters; unknown ones are ignored, as
// LAPI does.
func parseCSRequest(r *http.Request, b store.Bouncer) csRequest {
	qs := r.URL.Query()
	q := csRequest{v4Bits: b.CrowdSec.V4Bits, v6Bits: b.CrowdSec.V6Bits}
	scopes := []string{"ip", "range"}
	if v := qs.Get("scopes"); v != "" {
		scopes = splitList(v)
	}
	q.ip, q.rng = slices.Contains(scopes, "ip"), slices.Contains(scopes, "range")
	switch b.CrowdSec.Expand {
	case store.ExpandAlways:
		q.expand = true
	case store.ExpandScopes:
		q.expand = q.ip && !q.rng
	}
	q.origins = splitList(qs.Get("origins"))
	q.scenIn = splitList(qs.Get("scenarios_containing"))
	q.scenNo = splitList(qs.Get("scenarios_not_containing"))
	return q
}

// keep applies the scope, origin and scenario filters to one decision.
func (q *csRequest) keep(k wireKey, scenario string) bool {
	if (k.ip && !q.ip) || (!k.ip && !q.rng) {
		return false
	}
	if len(q.origins) > 0 && !slices.Contains(q.origins, CrowdSecOrigin) {
		return false
	}
	lower := strings.ToLower(scenario)
	if len(q.scenIn) > 0 && !slices.ContainsFunc(q.scenIn, func(s string) bool { return strings.Contains(lower, s) }) {
		return false
	}
	return !slices.ContainsFunc(q.scenNo, func(s string) bool { return strings.Contains(lower, s) })
}

// wire calls fn with each scope/value decision p yields for q.
func (q *csRequest) wire(p netip.Prefix, fn func(wireKey)) {
	switch {
	case p.IsSingleIP():
		fn(wireKey{ip: true, p: p})
	case q.expands(p):
		last := netipx.PrefixLastIP(p)
		for a := p.Addr(); a.IsValid() && !last.Less(a); a = a.Next() {
			fn(wireKey{ip: true, p: netip.PrefixFrom(a, a.BitLen())})
		}
	default:
		fn(wireKey{p: p})
	}
}

// csSet is one ruleset's decisions at two points: now (nil when the ruleset
// is not bound) and at the bouncer's base version.
type csSet struct {
	name     string
	cur      *render.DecisionSet
	bound    bool
	add, del map[netip.Prefix]render.Decision
}

// at returns the decision on p now (before false) or at the base.
func (c *csSet) at(p netip.Prefix, before bool) (render.Decision, bool) {
	if !before {
		if !c.bound || c.cur == nil {
			return render.Decision{}, false
		}
		return c.cur.Lookup(p)
	}
	if d, ok := c.del[p]; ok {
		return d, true
	}
	if c.cur == nil {
		return render.Decision{}, false
	}
	if _, ok := c.add[p]; ok {
		return render.Decision{}, false
	}
	return c.cur.Lookup(p)
}

func (c *csSet) scenario(d render.Decision) string {
	if c.cur != nil && d.Rule >= 1 && d.Rule <= len(c.cur.Rules) {
		return c.cur.Rules[d.Rule-1]
	}
	return ""
}

// find returns the decision of the first set that yields k now or at the base.
func (q *csRequest) find(sets []*csSet, k wireKey, before bool) (csDecision, bool) {
	for _, c := range sets {
		if !k.ip {
			if d, ok := c.at(k.p, before); ok && !q.expands(k.p) {
				return newCSDecision(c.name, c.scenario(d), k, q.duration(c.cur, k.p)), true
			}
			continue
		}
		a := k.p.Addr()
		if d, ok := c.at(k.p, before); ok {
			return newCSDecision(c.name, c.scenario(d), k, q.duration(c.cur, k.p)), true
		}
		if !q.expand {
			continue
		}
		limit := q.v6Bits
		if a.Is4() {
			limit = q.v4Bits
		}
		for bits := a.BitLen() - 1; bits >= limit; bits-- {
			if d, ok := c.at(netip.PrefixFrom(a, bits).Masked(), before); ok {
				return newCSDecision(c.name, c.scenario(d), k, q.duration(c.cur, d.Prefix)), true
			}
		}
	}
	return csDecision{}, false
}

// csStream is a stream answer.
type csStream struct {
	New     []csDecision `json:"new"`
	Deleted []csDecision `json:"deleted"`
}

// crowdSecCache keeps encoded full lists (startup pulls) by bouncer settings,
// filters and render versions: every bouncer starting on the same versions
// gets the same bytes.
type crowdSecCache struct {
	mu      sync.Mutex
	entries map[string]csCached
	order   []string
}

type csCached struct {
	body, gz []byte
	wide     int64
	// seq is the facts sequence the durations come from and at the time
	// they were computed: served later they are longer than the time left
	// (harmless: an ended ban is deleted, and a change since is sent at the
	// next pull); csCacheAge bounds by how much.
	seq int64
	at  time.Time
}

// csCacheAge is how long a cached full list is served: its durations were
// computed when it was built.
const csCacheAge = time.Minute

const csCacheSize = 16

func (c *crowdSecCache) get(key string) (csCached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok
}

func (c *crowdSecCache) put(key string, e csCached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]csCached{}
	}
	if _, ok := c.entries[key]; !ok {
		c.order = append(c.order, key)
		if len(c.order) > csCacheSize {
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
	}
	c.entries[key] = e
}

// fullList returns every current decision of sets (the bound ones) for q, the
// first set naming the decision of a value several yield, and how many Range
// decisions stayed ranges although the bouncer asked for Ip decisions.
func (q *csRequest) fullList(sets []*csSet) ([]csDecision, int64) {
	out := []csDecision{}
	var wide int64
	// With one set and no expansion every decision is one value; otherwise
	// a value may come from several decisions and find names the one a delta
	// names too.
	dedupe := q.expand || len(sets) > 1
	seen := map[wireKey]bool{}
	for _, c := range sets {
		if !c.bound || c.cur == nil {
			continue
		}
		for _, d := range c.cur.List {
			scenario := c.scenario(d)
			if !d.Prefix.IsSingleIP() && (q.expand || !q.rng) && !q.expands(d.Prefix) {
				wide++
			}
			q.wire(d.Prefix, func(k wireKey) {
				if !dedupe {
					if q.keep(k, scenario) {
						out = append(out, newCSDecision(c.name, scenario, k, q.computeDuration(c.cur, d.Prefix)))
					}
					return
				}
				if seen[k] {
					return
				}
				seen[k] = true
				if x, ok := q.find(sets, k, false); ok && q.keep(k, x.Scenario) {
					out = append(out, x)
				}
			})
		}
	}
	return out, wide
}

// crowdSecStream implements GET /crowdsec/v1/decisions/stream: with
// startup=true every decision, otherwise what is new and what was deleted
// since the render versions the bouncer last pulled (its applied versions,
// the cursor), from the render hub's decision history. A pull in a new
// renewal epoch sends every decision again as new.
func (s *Server) crowdSecStream(w http.ResponseWriter, r *http.Request) {
	// The cursor is the row's, not the cached key lookup's: another process
	// may have served the last pull.
	b, err := s.store.BouncerByKeyHash(r.Context(), store.HashSecret(strings.TrimSpace(r.Header.Get("X-Api-Key"))))
	switch {
	case isNotFound(err):
		writeCSError(w, http.StatusForbidden, "access forbidden")
		return
	case err != nil:
		s.csFault(w, r, err)
		return
	}
	startup := false
	if v := r.URL.Query().Get("startup"); v != "" {
		var err error
		if startup, err = strconv.ParseBool(v); err != nil {
			writeCSError(w, http.StatusBadRequest, "startup must be true or false")
			return
		}
	}
	if !s.renderReady(w, r) {
		return
	}
	q := parseCSRequest(r, b)
	now := s.now()
	epoch := now.Unix() / int64(CrowdSecRenewEvery/time.Second)

	// The sets: the bound rulesets in order, then those the bouncer last
	// pulled and no longer enforces.
	names := slices.Clone(b.Rulesets)
	for name := range b.Applied {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names[len(b.Rulesets):])
	applied := map[string]int64{}
	known := !startup
	var sets []*csSet
	for i, name := range names {
		bound := i < len(b.Rulesets)
		base := b.Applied[name]
		if startup {
			base = 0
		}
		cur, add, del, ok, err := s.opts.Render.DecisionsSince(r.Context(), name, base)
		switch {
		case errors.Is(err, render.ErrDecisionsPending):
			// Another process served that version moments ago; its next
			// step links it soon: nothing to say until then.
			s.touchCrowdSec(r, b)
			s.writeDecisions(w, r, csStream{New: []csDecision{}, Deleted: []csDecision{}})
			return
		case err != nil:
			// The stored steps could not be read: answer as for an unknown base.
			s.log.WarnContext(r.Context(), "Could not read the CrowdSec decision steps.", "ruleset", name, "error", err)
		}
		if bound && cur == nil {
			// Without a render the decisions of an existing ruleset are
			// unknown, not empty: answering would delete them.
			if _, err := s.store.RulesetByName(r.Context(), name); err == nil {
				w.Header().Set("Retry-After", "5")
				writeCSError(w, http.StatusServiceUnavailable, "ruleset "+name+" has not been rendered yet; try again")
				return
			} else if !isNotFound(err) {
				s.csFault(w, r, err)
				return
			}
		}
		if cur != nil && !startup && base > cur.Version {
			// Another process served the bouncer a newer render than this
			// one has: nothing to say until this process catches up.
			s.touchCrowdSec(r, b)
			s.writeDecisions(w, r, csStream{New: []csDecision{}, Deleted: []csDecision{}})
			return
		}
		if !ok {
			known = false
		}
		c := &csSet{name: name, cur: cur, bound: bound, add: map[netip.Prefix]render.Decision{}, del: map[netip.Prefix]render.Decision{}}
		for _, d := range add {
			c.add[d.Prefix] = d
		}
		for _, d := range del {
			c.del[d.Prefix] = d
		}
		sets = append(sets, c)
		if bound && cur != nil {
			applied[name] = cur.Version
		}
	}
	since := b.FactsSeq
	if startup {
		since = 0
	}
	exp, err := s.opts.Render.Expiries(r.Context(), since)
	if err != nil {
		s.csFault(w, r, err)
		return
	}
	q.exp, q.now = exp, now
	// Whether a ban may outlive its assertions depends on the rules' text
	// (render.DecisionSet.Lasting): a change of it sends every decision
	// again, with its duration counted afresh.
	rules := rulesKey(sets)
	renew := b.RenewEpoch != epoch || b.RulesKey != rules
	var resp csStream
	wide := b.WideRanges
	switch {
	case startup:
		key := fmt.Sprintf("%q %v %s", b.Rulesets, applied, q.key())
		e, ok := s.cs.get(key)
		if !ok || now.Sub(e.at) >= csCacheAge || now.Before(e.at) {
			e = csCached{seq: exp.Seq, at: now}
			var list []csDecision
			list, e.wide = q.fullList(sets)
			body, err := json.Marshal(csStream{New: list, Deleted: []csDecision{}})
			if err != nil {
				s.csFault(w, r, fmt.Errorf("api: encode decisions: %w", err))
				return
			}
			e.body = body
			// Bouncers (Go's HTTP client) take gzip: compress once, not per pull.
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // only fails on a bad level
			_, _ = zw.Write(body)
			_ = zw.Close()
			e.gz = buf.Bytes()
			s.cs.put(key, e)
		}
		if err := s.recordPull(r, b, applied, e.wide, epoch, e.seq, rules, now); err != nil {
			s.csFault(w, r, err)
			return
		}
		_ = cachedJSON{body: e.body, gz: e.gz, gzip: acceptsGzip(r.Header.Get("Accept-Encoding"))}.visit(w)
		return
	case !known || !exp.Known:
		// The base is not known here (another process or a restart made
		// it, or the facts changed since in ways this process cannot
		// name): every current decision goes out as new, with its current
		// duration. What the bouncer holds beyond them cannot be named; it
		// ends with its duration.
		s.log.WarnContext(r.Context(), "A CrowdSec bouncer pulled from a base this process does not know; sending every decision.",
			"bouncer", b.Name, "applied", b.Applied, "facts_seq", b.FactsSeq, "versions_known", known)
		resp.New, wide = q.fullList(sets)
		resp.Deleted = []csDecision{}
	default:
		resp = q.delta(sets)
		if renew {
			resp.New, wide = q.fullList(sets)
		}
	}
	if err := s.recordPull(r, b, applied, wide, epoch, exp.Seq, rules, now); err != nil {
		s.csFault(w, r, err)
		return
	}
	s.writeDecisions(w, r, resp)
}

// seenEvery is how often a live CrowdSec bouncer's last_seen (and the
// confirmation of the versions it holds) is written when nothing else about
// it changed: an idle pull every second writes once per seenEvery, not once
// per pull. Heartbeats of muninn bouncers confirm every 30 s.
const seenEvery = 10 * time.Second

// recordPull stores the stream's cursor after a pull of b (CrowdSecPull),
// unless the cursor, the user agent and the confirmed versions are what b
// holds and b was seen less than seenEvery ago.
func (s *Server) recordPull(r *http.Request, b store.Bouncer, applied map[string]int64, wide, epoch, seq int64, rules string, now time.Time) error {
	if b.LastSeen != nil && now.Sub(*b.LastSeen) < seenEvery && !now.Before(*b.LastSeen) && b.Version == r.UserAgent() &&
		maps.Equal(b.Applied, applied) && b.WideRanges == wide && b.RenewEpoch == epoch && b.FactsSeq == seq && b.RulesKey == rules {
		return nil
	}
	return s.store.CrowdSecPull(r.Context(), b.ID, r.UserAgent(), applied, wide, epoch, seq, rules, now)
}

// rulesKey fingerprints the rule texts of the bound sets.
func rulesKey(sets []*csSet) string {
	h := fnv.New64a()
	for _, c := range sets {
		if !c.bound || c.cur == nil {
			continue
		}
		_, _ = io.WriteString(h, c.name+"\x00")
		for _, r := range c.cur.Rules {
			_, _ = io.WriteString(h, r+"\x00")
		}
		_, _ = io.WriteString(h, "\x01")
	}
	return fmt.Sprintf("%x", h.Sum64())
}

// delta returns the decisions that are new since the base versions and those
// deleted since: per scope and value, what the first set yields now against
// what it yielded at the base.
func (q *csRequest) delta(sets []*csSet) csStream {
	touched := map[wireKey]bool{}
	var keys []wireKey
	touch := func(k wireKey) {
		if !touched[k] {
			touched[k] = true
			keys = append(keys, k)
		}
	}
	// Decisions on stored prefixes changed since the last pull may have a
	// new end: they go out again as new, with their current duration.
	resend := map[wireKey]bool{}
	if q.exp != nil {
		for _, c := range sets {
			if !c.bound || c.cur == nil {
				continue
			}
			for _, span := range q.exp.Changed {
				for _, d := range c.cur.Overlapping(span) {
					q.wire(d.Prefix, func(k wireKey) {
						resend[k] = true
						touch(k)
					})
				}
			}
		}
	}
	for _, c := range sets {
		for p := range c.add {
			q.wire(p, touch)
		}
		for p := range c.del {
			q.wire(p, touch)
		}
		if !c.bound && c.cur != nil {
			// Everything it yielded at the base is gone unless another
			// set yields it.
			for _, d := range c.cur.List {
				if _, ok := c.add[d.Prefix]; !ok {
					q.wire(d.Prefix, touch)
				}
			}
		}
	}
	slices.SortFunc(keys, func(a, b wireKey) int {
		if c := a.p.Addr().Compare(b.p.Addr()); c != 0 {
			return c
		}
		return a.p.Bits() - b.p.Bits()
	})
	out := csStream{New: []csDecision{}, Deleted: []csDecision{}}
	for _, k := range keys {
		now, inNow := q.find(sets, k, false)
		was, inBase := q.find(sets, k, true)
		switch {
		case inNow && (!inBase || was.ID != now.ID || resend[k]):
			if q.keep(k, now.Scenario) {
				out.New = append(out.New, now)
			}
		case inBase && !inNow:
			if q.keep(k, was.Scenario) {
				out.Deleted = append(out.Deleted, was)
			}
		}
	}
	return out
}

func (s *Server) writeDecisions(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.csFault(w, r, fmt.Errorf("api: encode decisions: %w", err))
		return
	}
	writeJSON(w, r, body)
}

// crowdSecDecisions implements GET /crowdsec/v1/decisions (what live
// bouncers ask per request) with LAPI's filters: ip and range (decisions
// containing them, or with contains=false inside them), scope, value and
// type. It answers JSON null when there are none, as CrowdSec does.
func (s *Server) crowdSecDecisions(w http.ResponseWriter, r *http.Request) {
	b := bouncerFrom(r.Context())
	qs := r.URL.Query()
	var within netip.Prefix // the ip or range asked about
	switch {
	case qs.Get("ip") != "":
		a, err := ParseAddr(qs.Get("ip"))
		if err != nil {
			writeCSError(w, http.StatusBadRequest, "ip: "+err.Error())
			return
		}
		within = netip.PrefixFrom(a, a.BitLen())
	case qs.Get("range") != "":
		p, err := ParsePrefix(qs.Get("range"))
		if err != nil {
			writeCSError(w, http.StatusBadRequest, "range: "+err.Error())
			return
		}
		within = p
	}
	contains := true
	if v := qs.Get("contains"); v != "" {
		var err error
		if contains, err = strconv.ParseBool(v); err != nil {
			writeCSError(w, http.StatusBadRequest, "contains must be true or false")
			return
		}
	}
	var value netip.Prefix
	if v := qs.Get("value"); v != "" {
		p, err := ParsePrefix(v)
		if err != nil {
			writeCSError(w, http.StatusBadRequest, "value: "+err.Error())
			return
		}
		value = p
	}
	scope := strings.ToLower(qs.Get("scope"))
	if t := qs.Get("type"); t != "" && !strings.EqualFold(t, "ban") {
		s.touchCrowdSec(r, b)
		s.writeDecisions(w, r, []csDecision(nil))
		return
	}
	if !s.renderReady(w, r) {
		return
	}
	exp, err := s.opts.Render.Expiries(r.Context(), 0)
	if err != nil {
		s.csFault(w, r, err)
		return
	}
	q := csRequest{ip: scope == "" || scope == "ip", rng: scope == "" || scope == "range", exp: exp, now: s.now()}
	var out []csDecision
	seen := map[wireKey]bool{}
	for _, name := range b.Rulesets {
		cur := s.opts.Render.Decisions(r.Context(), name)
		if cur == nil {
			continue
		}
		emit := func(d render.Decision) {
			k := wireKey{ip: d.Prefix.IsSingleIP(), p: d.Prefix}
			if seen[k] || (value.IsValid() && d.Prefix != value) || !q.keep(k, "") {
				return
			}
			seen[k] = true
			out = append(out, newCSDecision(name, cur.Rules[d.Rule-1], k, q.duration(cur, d.Prefix)))
		}
		switch {
		case value.IsValid() && !within.IsValid():
			if d, ok := cur.Lookup(value); ok {
				emit(d)
			}
		case within.IsValid() && contains:
			for bits := 0; bits <= within.Bits(); bits++ {
				if d, ok := cur.Lookup(netip.PrefixFrom(within.Addr(), bits).Masked()); ok {
					emit(d)
				}
			}
		case within.IsValid():
			lo, _ := slices.BinarySearchFunc(cur.List, within.Addr(), func(d render.Decision, a netip.Addr) int { return d.Prefix.Addr().Compare(a) })
			last := netipx.PrefixLastIP(within)
			for _, d := range cur.List[lo:] {
				if last.Less(d.Prefix.Addr()) {
					break
				}
				if d.Prefix.Bits() >= within.Bits() {
					emit(d)
				}
			}
		default:
			for _, d := range cur.List {
				emit(d)
			}
		}
	}
	s.touchCrowdSec(r, b)
	s.writeDecisions(w, r, out) // nil encodes as null, as CrowdSec answers
}

// crowdSecHead answers HEAD on the decision endpoints: the key check only
// (bouncers use it to test their configuration).
func (s *Server) crowdSecHead(w http.ResponseWriter, r *http.Request) {
	s.touchCrowdSec(r, bouncerFrom(r.Context()))
	w.WriteHeader(http.StatusOK)
}

// touchCrowdSec records that a CrowdSec bouncer was seen; a failure is
// logged, not answered (the request itself succeeded).
func (s *Server) touchCrowdSec(r *http.Request, b store.Bouncer) {
	// Live bouncers ask per request: one write per bouncer every few
	// seconds is enough to say it is there.
	if b.LastSeen != nil && s.now().Sub(*b.LastSeen) < 10*time.Second && b.Version == r.UserAgent() {
		return
	}
	if err := s.store.CrowdSecSeen(r.Context(), b.ID, r.UserAgent(), s.now()); err != nil {
		s.log.WarnContext(r.Context(), "Could not record a CrowdSec bouncer as seen.", "bouncer", b.Name, "error", err)
	}
}

// maxUsageBytes bounds a usage-metrics body.
const maxUsageBytes = 1 << 20

// csUsage is the part of CrowdSec's usage-metrics body muninn keeps.
type csUsage struct {
	RemediationComponents []struct {
		Type    string `json:"type"`
		Version string `json:"version"`
		Metrics []struct {
			Items []struct {
				Name   string            `json:"name"`
				Unit   string            `json:"unit"`
				Value  float64           `json:"value"`
				Labels map[string]string `json:"labels"`
			} `json:"items"`
		} `json:"metrics"`
	} `json:"remediation_components"`
}

// crowdSecUsage implements POST /crowdsec/v1/usage-metrics: the counters a
// bouncer pushes (dropped packets and bytes per origin, each push counting
// since the previous one) are added to its totals, shown on its page and in
// /metrics.
func (s *Server) crowdSecUsage(w http.ResponseWriter, r *http.Request) {
	b := bouncerFrom(r.Context())
	var body csUsage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxUsageBytes)).Decode(&body); err != nil {
		writeCSError(w, http.StatusBadRequest, "the usage metrics do not decode: "+err.Error())
		return
	}
	var items []store.UsageCounter
	for _, rc := range body.RemediationComponents {
		for _, m := range rc.Metrics {
			for _, it := range m.Items {
				if it.Name == "" || it.Value < 0 {
					writeCSError(w, http.StatusBadRequest, "a usage metric needs a name and a value of 0 or more")
					return
				}
				items = append(items, store.UsageCounter{Name: it.Name, Unit: it.Unit, Origin: it.Labels["origin"],
					Remediation: it.Labels["remediation"], Value: it.Value})
			}
		}
	}
	if _, err := s.store.AddBouncerUsage(r.Context(), b.ID, items, s.now()); err != nil {
		s.csFault(w, r, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// crowdSecAuth authenticates the CrowdSec API by a bouncer key in X-Api-Key,
// as CrowdSec's LAPI does; only bouncer keys reach it, and any key problem
// answers 403 {"message":"access forbidden"} as LAPI does.
func (s *Server) crowdSecAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.AuthenticateBouncer(r.Context(), strings.TrimSpace(r.Header.Get("X-Api-Key")))
		switch {
		case errors.Is(err, errNoBouncerKey), errors.Is(err, errBadBouncerKey):
			writeCSError(w, http.StatusForbidden, "access forbidden")
			return
		case err != nil:
			logCredentialError(r.Context(), s.log, "Could not check a bouncer key.", err)
			w.Header().Set("Retry-After", "5")
			writeCSError(w, http.StatusServiceUnavailable, "cannot check the credential now")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithBouncer(r.Context(), b)))
	})
}

// writeCSError writes an error the way CrowdSec's LAPI does.
func writeCSError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (s *Server) csFault(w http.ResponseWriter, r *http.Request, err error) {
	s.log.ErrorContext(r.Context(), "Request failed.", "path", r.URL.Path, "error", err)
	writeCSError(w, http.StatusInternalServerError, "internal error; the server log has the details")
}

func bouncerFrom(ctx context.Context) store.Bouncer {
	b, _ := BouncerFrom(ctx)
	return b
}

// renderReady waits (bounded by the request) until the render hub has loaded
// the stored renders; it answers 503 when it gives up.
func (s *Server) renderReady(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if s.opts.Render.WaitReady(ctx) {
		return true
	}
	if r.Context().Err() == nil {
		w.Header().Set("Retry-After", "5")
		writeCSError(w, http.StatusServiceUnavailable, "the renders are still loading; try again")
	}
	return false
}

// writeJSON writes a JSON body, gzip-compressed when the client accepts it.
func writeJSON(w http.ResponseWriter, r *http.Request, body []byte) {
	_ = cachedJSON{body: body, gzip: acceptsGzip(r.Header.Get("Accept-Encoding"))}.visit(w)
}
