package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// prefixPage is the data of prefix.html: an address or network, its effective
// view with the provenance of every fact, and the override form.
type prefixPage struct {
	Prefix netip.Prefix
	Found  bool
	View   resolve.View
	// Stored are the existing stored prefixes containing Prefix, most
	// specific first, with their live assertions.
	Stored     []resolve.Prefix
	Inside     []index.Row
	InsideMore bool
	Enrichment enrichment
	History    []store.AuditEntry
	// Sensor is an address's newest raw log events (at most sensorLimit)
	// and Offenders its repeat-offender records, from the store.
	Sensor    []store.SensorLine
	Offenders []store.Offender
	// Flows is what each flow exporter saw of an address as an outside
	// address (GET /flows/addresses/{address} answers the same rows).
	Flows       []store.FlowRemote
	HasOverride bool
	Form        overrideForm
}

// enrichment is what enrichment learned about an address or network: the
// geo network from the index, RDAP and host names from the store.
type enrichment struct {
	Geo       *index.GeoNet
	RDAP      *store.RDAPFacts
	Hostnames []store.Hostname
	// PassiveDNS are the names an address answered for, from the index.
	PassiveDNS []store.PassiveDNS
	// Attempts are the last RDAP and PTR lookups of an address (when,
	// outcome, error), from the store.
	Attempts []store.EnrichAttempt
}

// IsNetwork reports whether the page is about a network, not one address.
func (p prefixPage) IsNetwork() bool { return !p.Prefix.IsSingleIP() }

const insideLimit = 50

// sensorLimit is how many raw log events of an address its page shows.
const sensorLimit = 50

// showIP serves GET /ui/ips/{address}.
func (h *Handler) showIP(w http.ResponseWriter, r *http.Request) {
	a, err := api.ParseAddr(chi.URLParam(r, "address"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%q is not an IP address.", chi.URLParam(r, "address")))
		return
	}
	h.showPrefix(w, r, netip.PrefixFrom(a, a.BitLen()))
}

// showNetwork serves GET /ui/networks/{address}/{bits}.
func (h *Handler) showNetwork(w http.ResponseWriter, r *http.Request) {
	p, err := parseTarget(chi.URLParam(r, "address") + "/" + chi.URLParam(r, "bits"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if p.IsSingleIP() {
		http.Redirect(w, r, prefixURL(p), http.StatusSeeOther)
		return
	}
	h.showPrefix(w, r, p)
}

func (h *Handler) showPrefix(w http.ResponseWriter, r *http.Request, p netip.Prefix) {
	pp, err := h.loadPrefix(r.Context(), p)
	if err != nil {
		h.fault(w, r, "look up "+p.String(), err)
		return
	}
	pp.Form = pp.currentForm()
	h.render(w, r, http.StatusOK, "prefix", prefixTitle(p), "search", pp)
}

func prefixTitle(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// loadPrefix reads everything prefix.html shows: the view with its
// explanation from the index, the stored prefixes behind it, the geo network
// from the index, the RDAP network, host names and passive DNS names, the
// audit history of the exact prefix, for an address its raw log events and
// repeat-offender records and, for a network, the stored prefixes in it.
func (h *Handler) loadPrefix(ctx context.Context, p netip.Prefix) (prefixPage, error) {
	snap := h.ix.Snapshot()
	pp := prefixPage{Prefix: p}
	pp.View, pp.Found = snap.Explain(p)
	var err error
	pp.Stored = storedPrefixes(snap, pp.View.Prefixes)
	if g, ok := geoOf(snap, p); ok {
		pp.Enrichment.Geo = &g
	}
	if rd, ok := snap.RDAP(p); ok {
		pp.Enrichment.RDAP = &rd
	}
	if p.IsSingleIP() {
		pp.Enrichment.Hostnames = snap.Hostnames(p.Addr())
		pp.Enrichment.Attempts = snap.EnrichAttempts(p.Addr())
		pp.Enrichment.PassiveDNS = snap.PassiveDNS(p.Addr())
		if pp.Sensor, err = h.store.SensorLinesOf(ctx, p.Addr(), sensorLimit); err != nil {
			return pp, err
		}
		if pp.Offenders, err = h.store.OffendersOf(ctx, p.Addr(), h.now()); err != nil {
			return pp, err
		}
		if pp.Flows, err = h.store.FlowRemotes(ctx, p.Addr()); err != nil {
			return pp, err
		}
	}
	if pp.History, err = h.store.Audit(ctx, store.AuditFilter{Object: "prefix/" + p.String()}, 0, 20); err != nil {
		return pp, err
	}
	if !p.IsSingleIP() {
		var next netip.Prefix
		pp.Inside, next = snap.Search(index.Filter{Within: p}, netip.Prefix{}, insideLimit)
		pp.InsideMore = next.IsValid()
	}
	return pp, nil
}

// currentForm fills the override form from the manual assertions on the exact prefix.
func (pp *prefixPage) currentForm() overrideForm {
	f := overrideForm{Prefix: prefixTitle(pp.Prefix), Page: pp.Prefix.String()}
	var add, sup []string
	for _, sp := range pp.Stored {
		if sp.Prefix != pp.Prefix {
			continue
		}
		for _, a := range sp.Assertions {
			if !resolve.IsManual(a.Source) {
				continue
			}
			pp.HasOverride = true
			switch a.Kind {
			case resolve.KindClassification:
				f.Classification = a.Value
			case resolve.KindTag:
				add = append(add, a.Value)
			case resolve.KindSuppress:
				sup = append(sup, a.Value)
			case resolve.KindNote:
				f.Note = a.Value
			}
			if a.ExpiresAt != nil {
				f.ExpiresAt = a.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC")
			}
		}
	}
	f.AddTags, f.SuppressTags = strings.Join(add, ", "), strings.Join(sup, ", ")
	return f
}

// parseTarget reads an address or a CIDR in canonical form.
func parseTarget(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := api.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or network", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	addr, bits, _ := strings.Cut(s, "/")
	a, err := api.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP network: the address is malformed", s)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP network: the prefix length must be 0 to %d", s, a.BitLen())
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}
