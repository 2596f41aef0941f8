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
	"github.com/muninn/muninn/server/store"
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
		err := s.eachEnriched(ctx, f, func(it store.Item, e store.PageEnrichment) error {
			return cw.Write([]string{it.Prefix.String(), it.Classification, strings.Join(it.Tags, ","), strings.Join(it.Sources, ","), it.Note,
				e.Country, strconv.FormatInt(e.ASN, 10), e.ASOrg, it.FirstSeen.UTC().Format(time.RFC3339), it.LastSeen.UTC().Format(time.RFC3339),
				strconv.FormatInt(it.Sightings, 10)})
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
		err := s.eachItem(ctx, f, func(items []store.Item) error {
			for _, it := range items {
				b, err := json.Marshal(toItem(it))
				if err != nil {
					return err
				}
				if !first {
					if _, err := io.WriteString(w, ",\n"); err != nil {
						return err
					}
				}
				first = false
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
			return nil
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
		return s.eachItem(ctx, f, func(items []store.Item) error {
			for _, it := range items {
				if err := enc.Encode(toItem(it)); err != nil {
					return err
				}
			}
			return nil
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
		return s.eachEnriched(ctx, f, func(it store.Item, e store.PageEnrichment) error {
			row := []string{it.Prefix.String(), it.Classification, strconv.Itoa(Score(it.Classification)), strings.Join(it.Tags, ","),
				strconv.FormatInt(e.ASN, 10), e.ASOrg, e.Country, e.RDNS, it.FirstSeen.UTC().Format(chTime), it.LastSeen.UTC().Format(chTime),
				strings.Join(it.Sources, ",")}
			for i := range row {
				row[i] = tsvEscape.Replace(row[i])
			}
			_, err := io.WriteString(w, strings.Join(row, "\t")+"\n")
			return err
		})
	}}, nil
}

// eachEnriched is eachItem with each page's geo and names joined in.
func (s *Server) eachEnriched(ctx context.Context, f store.Filter, fn func(store.Item, store.PageEnrichment) error) error {
	return s.eachItem(ctx, f, func(items []store.Item) error {
		ps := make([]netip.Prefix, len(items))
		for i, it := range items {
			ps[i] = it.Prefix
		}
		en, err := s.store.EnrichPage(ctx, ps)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it, en[it.Prefix]); err != nil {
				return err
			}
		}
		return nil
	})
}
