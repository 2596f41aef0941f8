package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/store"
)

// auditPage is the data of audit.html.
type auditPage struct {
	Actor, Object, Since string
	Entries              []auditRow
	Next, First          string
	Error                string
}

// auditRow is an audit entry with the fields it changed, readable.
type auditRow struct {
	store.AuditEntry
	Changes []auditChange
}

const auditPageSize = 50

// listAudit serves GET /ui/audit?actor=&object=&since=YYYY-MM-DD&before=ID.
func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ap := auditPage{Actor: strings.TrimSpace(q.Get("actor")), Object: strings.TrimSpace(q.Get("object")), Since: strings.TrimSpace(q.Get("since"))}
	f := store.AuditFilter{Actor: ap.Actor, Object: ap.Object}
	status := http.StatusOK
	if ap.Since != "" {
		t, err := time.Parse("2006-01-02", ap.Since)
		if err != nil {
			ap.Error, status = "Since must be a date such as 2026-01-31.", http.StatusBadRequest
		} else {
			f.Since = &t
		}
	}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	if ap.Error == "" {
		es, err := h.store.Audit(r.Context(), f, before, auditPageSize+1)
		if err != nil {
			h.fault(w, r, "read the audit log", err)
			return
		}
		keep := url.Values{"actor": {ap.Actor}, "object": {ap.Object}, "since": {ap.Since}}
		if len(es) > auditPageSize {
			es = es[:auditPageSize]
			next := url.Values{}
			for k, v := range keep {
				next[k] = v
			}
			next.Set("before", strconv.FormatInt(es[len(es)-1].ID, 10))
			ap.Next = "/ui/audit?" + next.Encode()
		}
		if before > 0 {
			ap.First = "/ui/audit?" + keep.Encode()
		}
		for _, e := range es {
			ch, err := auditDiff(e.Before, e.After)
			if err != nil {
				h.fault(w, r, "read the audit log", fmt.Errorf("audit entry %d: %w", e.ID, err))
				return
			}
			ap.Entries = append(ap.Entries, auditRow{AuditEntry: e, Changes: ch})
		}
	}
	h.render(w, r, status, "audit", "Audit log", "audit", ap)
}
