package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/index"
)

// stream is a response written straight to the client, page by page. It
// implements the generated response interfaces of every export operation.
type stream struct {
	contentType string
	write       func(w io.Writer) error
}

func (st stream) visit(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", st.contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := st.write(bw); err != nil {
		// The status is sent already; all that is left is to cut the body short.
		return err
	}
	return bw.Flush()
}

// VisitExportCSVResponse writes the stream.
func (st stream) VisitExportCSVResponse(w http.ResponseWriter) error { return st.visit(w) }

// VisitExportJSONResponse writes the stream.
func (st stream) VisitExportJSONResponse(w http.ResponseWriter) error { return st.visit(w) }

// VisitExportNDJSONResponse writes the stream.
func (st stream) VisitExportNDJSONResponse(w http.ResponseWriter) error { return st.visit(w) }

// VisitExportClickHouseResponse writes the stream.
func (st stream) VisitExportClickHouseResponse(w http.ResponseWriter) error { return st.visit(w) }

func exportProblem(errs []apigen.FieldError) apigen.BadRequestApplicationProblemPlusJSONResponse {
	return apigen.BadRequestApplicationProblemPlusJSONResponse(problem(400, "the export filter is invalid", errs...))
}

// ExportCSV implements GET /export/ips.csv.
func (s *Server) ExportCSV(ctx context.Context, req apigen.ExportCSVRequestObject) (apigen.ExportCSVResponseObject, error) {
	p := req.Params
	f, errs := parseFilter(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportCSV400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	return stream{contentType: "text/csv; charset=utf-8", write: func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write([]string{"prefix", "classification", "tags", "sources", "note", "country", "asn", "as_org", "first_seen", "last_seen", "sightings"}); err != nil {
			return err
		}
		err := s.eachRow(ctx, f, func(snap *index.Snap, r index.Row) error {
			v, e := r.View, enrichOf(snap, r.Prefix)
			return cw.Write([]string{r.Prefix.String(), v.Classification, strings.Join(v.TagNames(), ","), strings.Join(v.Sources, ","), v.Note,
				e.country, strconv.FormatInt(e.asn, 10), e.asOrg, v.FirstSeen.UTC().Format(time.RFC3339), v.LastSeen.UTC().Format(time.RFC3339),
				strconv.FormatInt(v.Sightings, 10)})
		})
		if err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	}}, nil
}

// ExportJSON implements GET /export/ips.json.
func (s *Server) ExportJSON(ctx context.Context, req apigen.ExportJSONRequestObject) (apigen.ExportJSONResponseObject, error) {
	p := req.Params
	f, errs := parseFilter(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportJSON400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	return stream{contentType: "application/json", write: func(w io.Writer) error {
		if _, err := io.WriteString(w, "["); err != nil {
			return err
		}
		first := true
		err := s.eachRow(ctx, f, func(_ *index.Snap, r index.Row) error {
			b, err := json.Marshal(toItem(r.Prefix, r.View))
			if err != nil {
				return err
			}
			if !first {
				if _, err := io.WriteString(w, ",\n"); err != nil {
					return err
				}
			}
			first = false
			_, err = w.Write(b)
			return err
		})
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, "]\n")
		return err
	}}, nil
}

// ExportNDJSON implements GET /export/ips.ndjson.
func (s *Server) ExportNDJSON(ctx context.Context, req apigen.ExportNDJSONRequestObject) (apigen.ExportNDJSONResponseObject, error) {
	p := req.Params
	f, errs := parseFilter(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportNDJSON400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	return stream{contentType: "application/x-ndjson", write: func(w io.Writer) error {
		enc := json.NewEncoder(w)
		return s.eachRow(ctx, f, func(_ *index.Snap, r index.Row) error {
			return enc.Encode(toItem(r.Prefix, r.View))
		})
	}}, nil
}

// ClickHouseColumns is the column contract of the ClickHouse export, in order.
var ClickHouseColumns = []string{"prefix", "classification", "score", "tags", "asn", "as_org", "country", "rdns", "first_seen", "last_seen", "sources"}

// Score maps a classification to the 0–100 score of the exports.
func Score(classification string) int {
	switch classification {
	case "malicious":
		return 100
	case "suspicious":
		return 60
	case "unknown":
		return 20
	}
	return 0
}

// tsvEscape escapes a TSV value the way ClickHouse's TabSeparated reads it.
var tsvEscape = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)

// ExportClickHouse implements GET /export/clickhouse.tsv.
func (s *Server) ExportClickHouse(ctx context.Context, req apigen.ExportClickHouseRequestObject) (apigen.ExportClickHouseResponseObject, error) {
	p := req.Params
	f, errs := parseFilter(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportClickHouse400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	const chTime = "2006-01-02 15:04:05"
	return stream{contentType: "text/tab-separated-values; charset=utf-8", write: func(w io.Writer) error {
		if _, err := io.WriteString(w, strings.Join(ClickHouseColumns, "\t")+"\n"); err != nil {
			return err
		}
		return s.eachRow(ctx, f, func(snap *index.Snap, r index.Row) error {
			v, e := r.View, enrichOf(snap, r.Prefix)
			row := []string{r.Prefix.String(), v.Classification, strconv.Itoa(Score(v.Classification)), strings.Join(v.TagNames(), ","),
				strconv.FormatInt(e.asn, 10), e.asOrg, e.country, e.rdns, v.FirstSeen.UTC().Format(chTime), v.LastSeen.UTC().Format(chTime),
				strings.Join(v.Sources, ",")}
			for i := range row {
				row[i] = tsvEscape.Replace(row[i])
			}
			_, err := io.WriteString(w, strings.Join(row, "\t")+"\n")
			return err
		})
	}}, nil
}

// enrichment is the geo and name data exports add to a row.
type enrichment struct {
	country, asOrg, rdns string
	asn                  int64
}

// enrichOf returns, from snapshot snap, the most specific geo network
// containing p and, for a single address, its reverse-DNS name.
func enrichOf(snap *index.Snap, p netip.Prefix) enrichment {
	var e enrichment
	if g, ok := snap.GeoNetwork(p); ok {
		e.country, e.asn, e.asOrg = g.Country, int64(g.ASN), g.Org
	}
	if p.IsSingleIP() {
		e.rdns = snap.RDNS(p.Addr())
	}
	return e
}
