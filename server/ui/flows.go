package ui

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/flow"
	"github.com/muninn/muninn/server/store"
)

// flowTop bounds the dashboard's top talkers and contacts.
const flowTop = 10

// flowHostsPage is the data of flows.html.
type flowHostsPage struct {
	Hosts []store.FlowHost
}

// listFlowHosts serves GET /ui/flows: the inside hosts, most bytes first.
func (h *Handler) listFlowHosts(w http.ResponseWriter, r *http.Request) {
	hs, err := h.store.FlowHosts(r.Context(), netip.Prefix{}, 1000)
	if err != nil {
		h.fault(w, r, "list inside hosts", err)
		return
	}
	h.render(w, r, http.StatusOK, "flows", "Inside hosts", "flows", flowHostsPage{Hosts: hs})
}

// flowProfilePage is the data of flow.html: a host's or a subnet's profile.
type flowProfilePage struct {
	Within    netip.Prefix
	Host      *store.FlowHost // a single host's record; nil for a subnet
	Hosts     []store.FlowHost
	Since     string
	Profile   store.FlowProfile
	Series    template.HTML
	Countries template.HTML
	Orgs      template.HTML
	Ports     template.HTML
}

// showFlowHost serves GET /ui/flows/hosts/{address}.
func (h *Handler) showFlowHost(w http.ResponseWriter, r *http.Request) {
	a, err := api.ParseAddr(chi.URLParam(r, "address"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%q is not an IP address.", chi.URLParam(r, "address")))
		return
	}
	h.showFlowProfile(w, r, netip.PrefixFrom(a, a.BitLen()))
}

// showFlowNetwork serves GET /ui/flows/networks/{address}/{bits}.
func (h *Handler) showFlowNetwork(w http.ResponseWriter, r *http.Request) {
	p, err := parseTarget(chi.URLParam(r, "address") + "/" + chi.URLParam(r, "bits"))
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if p.IsSingleIP() {
		http.Redirect(w, r, "/ui/flows/hosts/"+p.Addr().String(), http.StatusSeeOther)
		return
	}
	h.showFlowProfile(w, r, p)
}

func (h *Handler) showFlowProfile(w http.ResponseWriter, r *http.Request, p netip.Prefix) {
	ctx := r.Context()
	sinceText := cmp.Or(r.URL.Query().Get("since"), "168h")
	since, err := flow.ParseSince(sinceText)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error()+".")
		return
	}
	now := h.now().UTC()
	d := flowProfilePage{Within: p, Since: sinceText}
	if p.IsSingleIP() {
		host, err := h.store.FlowHostGet(ctx, p.Addr())
		switch {
		case err == nil:
			d.Host = &host
		case errors.Is(err, store.ErrNotFound):
			h.fail(w, r, http.StatusNotFound, fmt.Sprintf("%s is not an inside host seen in flows.", p.Addr()))
			return
		default:
			h.fault(w, r, "look up the inside host", err)
			return
		}
	} else {
		var err error
		if d.Hosts, err = h.store.FlowHosts(ctx, p, 1000); err != nil {
			h.fault(w, r, "list inside hosts", err)
			return
		}
	}
	pr, err := flow.Profile(ctx, h.store, h.ix.Snapshot(), p, since, now, h.alertTags)
	if err != nil {
		h.fault(w, r, "build the profile", err)
		return
	}
	d.Profile = pr
	d.Series = columnChartOf("Bytes per hour", "hour", hourlyBuckets(pr.Series, pr.Since, now))
	d.Countries = barChart("Top countries by bytes", flowBuckets(pr.Countries))
	d.Orgs = barChart("Top AS organisations by bytes", flowBuckets(pr.Orgs))
	d.Ports = barChart("Top ports by bytes", flowBuckets(pr.Ports))
	title := "Subnet " + p.String()
	if p.IsSingleIP() {
		title = "Inside host " + p.Addr().String()
	}
	h.render(w, r, http.StatusOK, "flow", title, "flows", d)
}

// hourlyBuckets spreads the series over every hour from start to now (hours
// without traffic are 0), labelled "01-02 15h" in UTC.
func hourlyBuckets(series []store.FlowPoint, start, now time.Time) []store.Bucket {
	by := map[int64]int64{}
	for _, p := range series {
		by[p.At.Unix()] += p.Bytes
	}
	var out []store.Bucket
	for t := start.Truncate(time.Hour); !t.After(now); t = t.Add(time.Hour) {
		out = append(out, store.Bucket{Label: t.UTC().Format("01-02 15h"), Count: by[t.Unix()]})
	}
	return out
}

func flowBuckets(cs []store.FlowCount) []store.Bucket {
	out := make([]store.Bucket, 0, len(cs))
	for _, c := range cs {
		out = append(out, store.Bucket{Label: c.Key, Count: c.Bytes})
	}
	return out
}

// flowDashboard is the dashboard's flow panels: the inside hosts with most
// bytes and the contacts with bad addresses, over the last day.
type flowDashboard struct {
	TopTalkers template.HTML
	Talkers    []store.FlowCount
	Contacts   []store.FlowContactRow
}

func (h *Handler) flowPanels(ctx context.Context) (flowDashboard, error) {
	since := h.now().UTC().Add(-24 * time.Hour).Truncate(time.Hour)
	var d flowDashboard
	var err error
	if d.Talkers, err = h.store.FlowTopTalkers(ctx, since, flowTop); err != nil {
		return d, err
	}
	d.TopTalkers = barChart("Inside hosts with the most bytes, last 24 hours", flowBuckets(d.Talkers))
	if d.Contacts, err = flow.Contacts(ctx, h.store, h.ix.Snapshot(), netip.Prefix{}, since, h.alertTags, flowTop); err != nil {
		return d, err
	}
	return d, nil
}

// hostName is what a page calls an inside host: its label, else its lease
// name, else "".
func hostName(fh store.FlowHost) string {
	return strings.TrimSpace(cmp.Or(fh.Label, fh.LeaseName))
}
