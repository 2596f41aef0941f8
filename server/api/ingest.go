package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
)

// observation is one ingest line as sent.
type observation struct {
	IP             string          `json:"ip"`
	Source         string          `json:"source"`
	Tags           []string        `json:"tags"`
	Classification string          `json:"classification"`
	SeenAt         *time.Time      `json:"seen_at"`
	TTL            json.RawMessage `json:"ttl"`
	Note           string          `json:"note"`
}

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$`)

const (
	maxLineBytes = 1 << 20
	maxTags      = 50
	maxTTL       = 10 * 365 * 24 * time.Hour
	// maxIngestErrors bounds the rejected lines reported back.
	maxIngestErrors = 1000
)

// parseTTL accepts a Go duration string ("24h") or a number of seconds.
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var d time.Duration
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("must be a duration such as \"24h\" or a number of seconds")
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("must be a duration such as \"24h\" or a number of seconds")
		}
		d = v
	} else {
		secs, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return 0, errors.New("must be a duration such as \"24h\" or a number of seconds")
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 || d > maxTTL {
		return 0, errors.New("must be positive and at most 10 years")
	}
	return d, nil
}

// validate turns one decoded observation into a store row. A prefix wider
// than the limit (policy.CheckWidth) is refused unless allowWide.
func (s *Server) validate(o observation, defaultSource string, now time.Time, allowWide bool) (store.Observation, *apigen.IngestError) {
	bad := func(field, reason string) *apigen.IngestError {
		return &apigen.IngestError{Field: ptr(field), Reason: reason}
	}
	if o.IP == "" {
		return store.Observation{}, bad("/ip", "is required")
	}
	p, err := ParsePrefix(o.IP)
	if err != nil {
		return store.Observation{}, bad("/ip", err.Error())
	}
	wide := policy.CheckWidth(p)
	if wide != nil && !allowWide {
		return store.Observation{}, bad("/ip", wide.Error())
	}
	src := o.Source
	if src == "" {
		src = defaultSource
	}
	if !sourceName.MatchString(src) {
		return store.Observation{}, bad("/source", "must be 1–100 letters, digits or ._:/@- starting with a letter or digit")
	}
	if len(o.Tags) > maxTags {
		return store.Observation{}, bad("/tags", fmt.Sprintf("at most %d tags", maxTags))
	}
	for i, t := range o.Tags {
		if reason := tagNameProblem(t); reason != "" {
			return store.Observation{}, bad(fmt.Sprintf("/tags/%d", i), reason)
		}
	}
	if o.Classification != "" && !resolve.ValidClassification(o.Classification) {
		return store.Observation{}, bad("/classification", "must be one of malicious, suspicious, benign, unknown")
	}
	if len(o.Note) > 4000 {
		return store.Observation{}, bad("/note", "must be at most 4000 bytes")
	}
	seen := now
	if o.SeenAt != nil {
		seen = *o.SeenAt
		if seen.After(now.Add(5 * time.Minute)) {
			return store.Observation{}, bad("/seen_at", "is in the future")
		}
	}
	ttl, err := parseTTL(o.TTL)
	if err != nil {
		return store.Observation{}, bad("/ttl", err.Error())
	}
	out := store.Observation{Prefix: p, Source: "ingest:" + src, Tags: o.Tags, Classification: o.Classification, SeenAt: seen, Note: o.Note,
		WidthLifted: wide != nil}
	if ttl > 0 {
		exp := seen.Add(ttl)
		out.ExpiresAt = &exp
	}
	return out, nil
}

// decodeStrict decodes one JSON object, refusing unknown fields and trailing data.
func decodeStrict(b []byte, o *observation) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(o); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the object")
	}
	return nil
}

// ingester batches validated rows and writes them on its own goroutine, so
// parsing the next batch overlaps the database merging the last one.
type ingester struct {
	s       *Server
	actor   string
	batch   []store.Observation
	work    chan []store.Observation
	done    chan error
	result  apigen.IngestResult
	pending int64
	// allowWide: an admin sent allow_wide=true (the contract checked the role).
	allowWide bool
}

func (s *Server) newIngester(ctx context.Context, actor string) *ingester {
	in := &ingester{s: s, actor: actor, work: make(chan []store.Observation, 1), done: make(chan error, 1)}
	in.result.Errors = []apigen.IngestError{}
	go func() {
		var err error
		for b := range in.work {
			if err == nil {
				err = s.store.Ingest(ctx, b, actor)
			}
		}
		in.done <- err
	}()
	return in
}

func (in *ingester) reject(line int64, e apigen.IngestError) {
	in.result.Rejected++
	if len(in.result.Errors) < maxIngestErrors {
		e.Line = line
		in.result.Errors = append(in.result.Errors, e)
	}
}

func (in *ingester) add(o store.Observation) {
	in.batch = append(in.batch, o)
	in.pending++
	if len(in.batch) >= in.s.opts.IngestBatch {
		in.work <- in.batch
		in.batch = nil
	}
}

// finish flushes the last batch and waits for the writer.
func (in *ingester) finish() error {
	if len(in.batch) > 0 {
		in.work <- in.batch
		in.batch = nil
	}
	close(in.work)
	err := <-in.done
	if err == nil {
		in.result.Accepted = in.pending
	}
	return err
}

// Ingest implements POST /ingest for NDJSON and JSON arrays (the HTTP layer hands
// both over as a stream; the first byte tells which).
func (s *Server) Ingest(ctx context.Context, req apigen.IngestRequestObject) (apigen.IngestResponseObject, error) {
	if req.Body == nil {
		return apigen.Ingest415ApplicationProblemPlusJSONResponse{UnsupportedMediaTypeApplicationProblemPlusJSONResponse: apigen.UnsupportedMediaTypeApplicationProblemPlusJSONResponse(
			problem(http.StatusUnsupportedMediaType, "send application/x-ndjson or application/json", fieldErr("Content-Type", "unsupported media type")))}, nil
	}
	actor := actorOf(ctx)
	now := s.now()
	br := bufio.NewReaderSize(req.Body, 256<<10)
	in := s.newIngester(ctx, actor)
	in.allowWide = deref(req.Params.AllowWide)
	var readErr error
	first, err := peekNonSpace(br)
	switch {
	case err == io.EOF:
		readErr = errEmptyBody
	case err != nil:
		readErr = err
	case first == '[':
		readErr = s.ingestArray(br, in, actor, now)
	default:
		readErr = s.ingestNDJSON(br, in, actor, now)
	}
	if err := in.finish(); err != nil {
		return nil, err
	}
	if in.result.Accepted > 0 {
		if err := s.catchUp(ctx); err != nil {
			return nil, err
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(readErr, &tooBig):
		return apigen.Ingest413ApplicationProblemPlusJSONResponse{TooLargeApplicationProblemPlusJSONResponse: apigen.TooLargeApplicationProblemPlusJSONResponse(
			problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes; the %d observations before the limit were stored", tooBig.Limit, in.result.Accepted),
				fieldErr("", "too large")))}, nil
	case errors.Is(readErr, errEmptyBody):
		return apigen.Ingest400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(
			problem(http.StatusBadRequest, "the body is empty", fieldErr("", "send at least one observation")))}, nil
	case readErr != nil:
		var se *syntaxAt
		if errors.As(readErr, &se) {
			in.reject(se.element, apigen.IngestError{Reason: se.Error() + "; the rest of the array was not read"})
		} else {
			return nil, readErr
		}
	}
	return apigen.Ingest200JSONResponse(in.result), nil
}

var errEmptyBody = errors.New("empty body")

// syntaxAt is a JSON array broken at an element; decoding cannot go on past it.
type syntaxAt struct {
	element int64
	err     error
}

func (e *syntaxAt) Error() string { return "malformed JSON: " + e.err.Error() }

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\n' && b != '\r' && b != '\t' {
			return b, br.UnreadByte()
		}
	}
}

func (s *Server) ingestNDJSON(br *bufio.Reader, in *ingester, actor string, now time.Time) error {
	var line int64
	for {
		raw, err := readLine(br)
		if len(raw) == 0 && err == io.EOF {
			return nil
		}
		line++
		if errors.Is(err, errLineTooLong) {
			in.reject(line, apigen.IngestError{Reason: fmt.Sprintf("line longer than %d bytes", maxLineBytes)})
			continue
		}
		if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 {
			var o observation
			if derr := decodeStrict(trimmed, &o); derr != nil {
				in.reject(line, apigen.IngestError{Reason: "malformed JSON: " + derr.Error()})
			} else if row, bad := s.validate(o, actor, now, in.allowWide); bad != nil {
				in.reject(line, *bad)
			} else {
				in.add(row)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its newline; an over-long line is skipped to
// its end and reported as errLineTooLong.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLineBytes {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return nil, err
			}
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), err
	}
}

func (s *Server) ingestArray(br *bufio.Reader, in *ingester, actor string, now time.Time) error {
	dec := json.NewDecoder(br)
	if _, err := dec.Token(); err != nil { // the opening '['
		return &syntaxAt{element: 1, err: err}
	}
	var n int64
	for dec.More() {
		n++
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return err
			}
			return &syntaxAt{element: n, err: err}
		}
		var o observation
		if err := decodeStrict(raw, &o); err != nil {
			in.reject(n, apigen.IngestError{Reason: "malformed observation: " + err.Error()})
			continue
		}
		row, bad := s.validate(o, actor, now, in.allowWide)
		if bad != nil {
			in.reject(n, *bad)
			continue
		}
		in.add(row)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return &syntaxAt{element: n + 1, err: err}
	}
	return nil
}
