package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/export"
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
		if err := cw.Write([]string{"prefix", "classification", "tags", "sources", "note", "country", "asn", "as_org", "first_seen", "last_seen", "sightings", "passive_dns"}); err != nil {
			return err
		}
		err := s.eachRow(ctx, f, func(snap *index.Snap, r index.Row) error {
			v, e := r.View, enrichOf(snap, r.Prefix)
			return cw.Write([]string{r.Prefix.String(), v.Classification, strings.Join(v.TagNames(), ","), strings.Join(v.Sources, ","), v.Note,
				e.country, strconv.FormatInt(e.asn, 10), e.asOrg, v.FirstSeen.UTC().Format(time.RFC3339), v.LastSeen.UTC().Format(time.RFC3339),
				strconv.FormatInt(v.Sightings, 10), strings.Join(passiveNames(snap, r.Prefix), ",")})
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
		err := s.eachRow(ctx, f, func(snap *index.Snap, r index.Row) error {
			b, err := json.Marshal(toItem(snap, r.Prefix, r.View))
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
		return s.eachRow(ctx, f, func(snap *index.Snap, r index.Row) error {
			return enc.Encode(toItem(snap, r.Prefix, r.View))
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

// VisitExportZeekIntelResponse writes the stream.
func (st stream) VisitExportZeekIntelResponse(w http.ResponseWriter) error { return st.visit(w) }

// VisitExportSuricataCategoriesResponse writes the stream.
func (st stream) VisitExportSuricataCategoriesResponse(w http.ResponseWriter) error {
	return st.visit(w)
}

// VisitExportSuricataReputationResponse writes the stream.
func (st stream) VisitExportSuricataReputationResponse(w http.ResponseWriter) error {
	return st.visit(w)
}

// VisitExportSuricataDatasetResponse writes the stream.
func (st stream) VisitExportSuricataDatasetResponse(w http.ResponseWriter) error { return st.visit(w) }

// recordOf is row r of snapshot snap as the format exports see it.
func recordOf(snap *index.Snap, r index.Row) export.Record {
	rec := export.Record{Prefix: r.Prefix, View: r.View, Score: Score(r.View.Classification)}
	rec.Geo, rec.HasGeo = snap.GeoNetwork(r.Prefix)
	rec.RDNS = enrichOf(snap, r.Prefix).rdns
	return rec
}

// eachRecord streams the records of the rows matching the export filter
// (parsed from p) to fn; a filter problem comes back as errs.
func (s *Server) eachRecord(p filterParams) (errs []apigen.FieldError, run func(ctx context.Context, fn func(export.Record) error) error) {
	f, errs := parseFilter(p)
	return errs, func(ctx context.Context, fn func(export.Record) error) error {
		return s.eachRow(ctx, f, func(snap *index.Snap, r index.Row) error { return fn(recordOf(snap, r)) })
	}
}

// ExportZeekIntel implements GET /export/zeek-intel.txt.
func (s *Server) ExportZeekIntel(ctx context.Context, req apigen.ExportZeekIntelRequestObject) (apigen.ExportZeekIntelResponseObject, error) {
	p := req.Params
	errs, run := s.eachRecord(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportZeekIntel400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	return stream{contentType: "text/plain; charset=utf-8", write: func(w io.Writer) error {
		if _, err := io.WriteString(w, export.ZeekHeader); err != nil {
			return err
		}
		return run(ctx, func(r export.Record) error {
			if r.Score == 0 {
				return nil // benign: not intelligence
			}
			return export.WriteZeekRow(w, r, s.opts.BaseURL)
		})
	}}, nil
}

// suricataCategories returns the Suricata category id of each tag (stable:
// the store keeps them) and the tags' descriptions.
func (s *Server) suricataCategories(ctx context.Context) (map[string]int, map[string]string, error) {
	tags, err := s.store.Tags(ctx)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(tags))
	desc := make(map[string]string, len(tags))
	for i, t := range tags {
		names[i], desc[t.Name] = t.Name, t.Description
	}
	cats, err := s.store.SuricataCategories(ctx, names)
	if err != nil {
		return nil, nil, err
	}
	return cats, desc, nil
}

// ExportSuricataCategories implements GET /export/suricata/iprep/categories.txt.
func (s *Server) ExportSuricataCategories(ctx context.Context, _ apigen.ExportSuricataCategoriesRequestObject) (apigen.ExportSuricataCategoriesResponseObject, error) {
	cats, desc, err := s.suricataCategories(ctx)
	if err != nil {
		return nil, err
	}
	return stream{contentType: "text/plain; charset=utf-8", write: func(w io.Writer) error {
		return export.WriteSuricataCategories(w, cats, desc)
	}}, nil
}

// ExportSuricataReputation implements GET /export/suricata/iprep/reputation.list.
func (s *Server) ExportSuricataReputation(ctx context.Context, req apigen.ExportSuricataReputationRequestObject) (apigen.ExportSuricataReputationResponseObject, error) {
	p := req.Params
	errs, run := s.eachRecord(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportSuricataReputation400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	cats, _, err := s.suricataCategories(ctx)
	if err != nil {
		return nil, err
	}
	return stream{contentType: "text/plain; charset=utf-8", write: func(w io.Writer) error {
		return run(ctx, func(r export.Record) error { return export.WriteSuricataRep(w, r, cats) })
	}}, nil
}

// ExportSuricataDataset implements GET /export/suricata/dataset.lst.
func (s *Server) ExportSuricataDataset(ctx context.Context, req apigen.ExportSuricataDatasetRequestObject) (apigen.ExportSuricataDatasetResponseObject, error) {
	p := req.Params
	errs, run := s.eachRecord(filterParams{p.Tag, p.Classification, p.Source, p.Within, p.SeenSince})
	if len(errs) > 0 {
		return apigen.ExportSuricataDataset400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: exportProblem(errs)}, nil
	}
	return stream{contentType: "text/plain; charset=utf-8", write: func(w io.Writer) error {
		return run(ctx, func(r export.Record) error { return export.WriteSuricataDataset(w, r) })
	}}, nil
}

// mmdbCache is the last MMDB export: the file built from one index snapshot.
type mmdbCache struct {
	mu    sync.Mutex
	dir   string // the export directory, made on first use
	gen   uint64
	built time.Time // when the last build started (the server's clock)
	path  string
	etag  string
	size  int64
}

// mmdbFile returns the MMDB of the index's current snapshot, building it
// when the snapshot is newer than the last build and the last build is at
// least opts.MMDBRebuild old (else the last build answers): written to a temp file in
// the export directory, then renamed over muninn.mmdb (a reader holding the
// old file keeps reading it).
func (s *Server) mmdbFile(ctx context.Context) (*os.File, string, int64, error) {
	c := &s.mmdb
	c.mu.Lock()
	defer c.mu.Unlock()
	snap := s.opts.Index.Snapshot()
	now := s.now()
	if c.path == "" || c.gen != snap.Gen() && (now.Sub(c.built) >= s.opts.MMDBRebuild || now.Before(c.built)) {
		if c.dir == "" {
			dir := s.opts.ExportDir
			var err error
			if dir == "" {
				dir, err = os.MkdirTemp("", "muninn-exports-")
			} else {
				err = os.MkdirAll(dir, 0o750)
			}
			if err != nil {
				return nil, "", 0, fmt.Errorf("api: export dir: %w", err)
			}
			c.dir = dir
		}
		var records []export.Record
		err := eachRowIn(ctx, snap, index.Filter{}, func(snap *index.Snap, r index.Row) error {
			records = append(records, recordOf(snap, r))
			return nil
		})
		if err != nil {
			return nil, "", 0, err
		}
		tree, err := export.MMDB(records, now)
		if err != nil {
			return nil, "", 0, err
		}
		tmp, err := os.CreateTemp(c.dir, "muninn.mmdb.tmp-*")
		if err != nil {
			return nil, "", 0, fmt.Errorf("api: mmdb: %w", err)
		}
		h := sha256.New()
		n, err := tree.WriteTo(io.MultiWriter(tmp, h))
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		path := filepath.Join(c.dir, "muninn.mmdb")
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
			return nil, "", 0, fmt.Errorf("api: mmdb: %w", err)
		}
		c.gen, c.built, c.path, c.size = snap.Gen(), now, path, n
		c.etag = `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
	}
	f, err := os.Open(c.path)
	if err != nil {
		return nil, "", 0, fmt.Errorf("api: mmdb: %w", err)
	}
	return f, c.etag, c.size, nil
}

// ExportMMDB implements GET /export/muninn.mmdb.
func (s *Server) ExportMMDB(ctx context.Context, req apigen.ExportMMDBRequestObject) (apigen.ExportMMDBResponseObject, error) {
	f, etag, size, err := s.mmdbFile(ctx)
	if err != nil {
		return nil, err
	}
	if etagMatches(req.Params.IfNoneMatch, etag) {
		_ = f.Close()
		return apigen.ExportMMDB304Response{Headers: apigen.ExportMMDB304ResponseHeaders{ETag: &etag}}, nil
	}
	return apigen.ExportMMDB200ApplicationoctetStreamResponse{Body: f, ContentLength: size, Headers: apigen.ExportMMDB200ResponseHeaders{ETag: &etag}}, nil
}
