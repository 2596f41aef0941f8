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
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/resolve"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/feed"
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
	if d < time.Second || d > maxTTL {
		return 0, errors.New("must be at least 1 second and at most 10 years")
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
	if reason := TextProblem(o.Note); reason != "" {
		return store.Observation{}, bad("/note", reason)
	}
	seen := now
	if o.SeenAt != nil {
		seen = *o.SeenAt
		if reason := timeProblem(seen, now); reason != "" {
			return store.Observation{}, bad("/seen_at", reason)
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

// decodeLine decodes and validates one NDJSON line or array element: valid
// UTF-8 (encoding/json would silently replace bad bytes), one JSON object of
// known fields, then validate.
func (s *Server) decodeLine(raw []byte, actor string, now time.Time, allowWide bool) (store.Observation, *apigen.IngestError) {
	if !utf8.Valid(raw) {
		return store.Observation{}, &apigen.IngestError{Reason: "is not valid UTF-8"}
	}
	var o observation
	if !decodeFast(raw, &o) {
		o = observation{}
		if err := decodeStrict(raw, &o); err != nil {
			return store.Observation{}, observationLine.explain(err)
		}
	}
	return s.validate(o, actor, now, allowWide)
}

// observationLine names an ingest line's object and fields in errors.
var observationLine = jsonObject{what: "an observation", fields: []string{"ip", "source", "tags", "classification", "seen_at", "ttl", "note"},
	stringArrays: map[string]arrayOf{"tags": {array: "an array of tag names", element: "a tag name (a string)"}}}

// decodeStrict decodes one ingest line the way encoding/json does, with
// observationLine's rules.
func decodeStrict(b []byte, o *observation) error { return observationLine.decode(b, o) }

// ingester batches validated rows and writes them on its own goroutine, so
// parsing the next batch overlaps the database merging the last one. Each
// batch is its own transaction; the ingester remembers how far the stored
// batches reach, so a failure can answer with what was stored and the line to
// resend from.
type ingester struct {
	s      *Server
	ctx    context.Context
	actor  string
	batch  []store.Observation
	work   chan ingestBatch
	done   chan struct{}
	result apigen.IngestResult
	// line is the last line handled (stored in the batch or rejected).
	line    int64
	pending int64
	// allowWide: an admin sent allow_wide=true (the contract checked the role).
	allowWide bool
	failed    atomic.Bool
	// acked: finish answered once the rows were durable, before the merge
	// (IngestVisibleWithin); the index is not waited for either.
	acked bool
	// logged: the batches went to the observation log (IngestVisibleWithin).
	logged bool
	// Written by the writer goroutine; read after done is closed.
	err                     error
	stored                  int64
	storedThrough, rejected int64
}

// ingestBatch is a batch of rows and how far into the body it reaches.
type ingestBatch struct {
	rows []store.Observation
	// through is the last line the batch covers; rejected the lines rejected
	// up to it.
	through, rejected int64
}

// ingestWindow is how many batches of one upload may wait for the ingest
// aggregator at once: the next batch is queued while the last one merges.
const ingestWindow = 4

func (s *Server) newIngester(ctx context.Context, actor string) *ingester {
	in := &ingester{s: s, ctx: ctx, actor: actor, work: make(chan ingestBatch, 1), done: make(chan struct{})}
	in.result.Errors = []apigen.IngestError{}
	go func() {
		defer close(in.done)
		type submitted struct {
			p *store.PendingIngest
			b ingestBatch
		}
		var (
			queue []submitted
			prev  *store.PendingIngest
		)
		// settle waits for the oldest batch in flight and counts it.
		settle := func() {
			q := queue[0]
			queue = queue[1:]
			if err := q.p.Wait(ctx); err != nil {
				if in.err == nil {
					in.err = err
					in.failed.Store(true)
				}
				return
			}
			if in.err != nil {
				return // cannot happen: a batch after a failed one fails too
			}
			in.stored += int64(len(q.b.rows))
			if s.opts.Observed != nil {
				s.opts.Observed("ingest", len(q.b.rows))
			}
			in.storedThrough, in.rejected = q.b.through, q.b.rejected
		}
		for b := range in.work {
			if in.err != nil {
				continue // drain: nothing after a failed batch is stored
			}
			if in.s.opts.IngestVisibleWithin > 0 {
				// Durable once appended to the observation log; finish
				// waits for the merge or acknowledges before it.
				if err := s.store.AppendObservations(ctx, b.rows, actor); err != nil {
					in.err = err
					in.failed.Store(true)
					continue
				}
				in.stored += int64(len(b.rows))
				in.logged = true
				in.storedThrough, in.rejected = b.through, b.rejected
				continue
			}
			prev = s.store.SubmitObservations(b.rows, actor, prev)
			queue = append(queue, submitted{prev, b})
			for len(queue) >= ingestWindow {
				settle()
			}
		}
		for len(queue) > 0 {
			settle()
		}
	}()
	return in
}

// errIngestStopped ends reading once the writer has failed.
var errIngestStopped = errors.New("ingest: the database failed")

func (in *ingester) reject(line int64, e apigen.IngestError) {
	in.line = line
	in.result.Rejected++
	if len(in.result.Errors) < maxIngestErrors {
		e.Line = line
		in.result.Errors = append(in.result.Errors, bounded(e))
	}
}

// add queues a row of line; it fails once the writer has failed, so the rest
// of the body is not parsed for nothing.
func (in *ingester) add(line int64, o store.Observation) error {
	if in.failed.Load() {
		return errIngestStopped
	}
	in.line = line
	in.batch = append(in.batch, o)
	in.pending++
	if len(in.batch) >= in.s.opts.IngestBatch {
		in.flush()
	}
	return nil
}

func (in *ingester) flush() {
	in.work <- ingestBatch{rows: in.batch, through: in.line, rejected: in.result.Rejected}
	in.batch = nil
}

// finish flushes the last batch and waits for the writer. On success every
// line up to in.line was handled.
func (in *ingester) finish() error {
	if len(in.batch) > 0 {
		in.flush()
	}
	close(in.work)
	<-in.done
	if in.err != nil {
		if in.logged && in.stored > 0 {
			// What was appended before the failure is stored; make it
			// visible now if the database lets us (else a merger will).
			_ = in.s.store.Flush(in.ctx)
		}
		return in.err
	}
	if in.logged && in.stored > 0 {
		if bound := in.s.opts.IngestVisibleWithin; in.s.store.MergeLag() < bound {
			// Durable now; the merge that makes it visible runs in the
			// background and the merger keeps up within the bound.
			in.s.store.MergeSoon()
			in.acked = true
		} else if err := in.s.store.Flush(in.ctx); err != nil {
			// Every batch is in the log (it will be merged whatever
			// happens now); answer once it is visible, so the caller's
			// next read sees it.
			in.storedThrough, in.rejected = in.line, in.result.Rejected
			return err
		}
	}
	in.result.Accepted = in.pending
	in.storedThrough, in.rejected = in.line, in.result.Rejected
	return nil
}

// stopped is the answer of an ingest that ended part-way: what was stored,
// the lines rejected before it stopped, and the line to resend from.
func (in *ingester) stopped(status int, detail string, fields ...apigen.FieldError) apigen.IngestProblem {
	return stoppedProblem(status, detail, "observations were", in.stored, in.rejected, in.storedThrough, fields...)
}

// stoppedProblem is the answer of a streamed upload (ingest, events) that
// ended part-way: stored items (named by what, e.g. "lines were") were
// stored and rejected lines refused up to line storedThrough; the client
// resends from the line after it.
func stoppedProblem(status int, detail, what string, stored, rejected, storedThrough int64, fields ...apigen.FieldError) apigen.IngestProblem {
	p := problem(status, fmt.Sprintf("%s; %d %s stored and %d lines rejected before line %d, nothing from it on was stored",
		detail, stored, what, rejected, storedThrough+1), fields...)
	return apigen.IngestProblem{Type: p.Type, Title: p.Title, Status: p.Status, Detail: p.Detail, Errors: p.Errors,
		Accepted: stored, Rejected: rejected, StoppedAtLine: storedThrough + 1}
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
	readErr := feed.SkipBOM(br)
	if readErr == nil {
		var first byte
		first, readErr = peekNonSpace(br)
		switch {
		case readErr == io.EOF:
			readErr = errEmptyBody
		case readErr != nil:
		case first == '[':
			readErr = s.ingestArray(br, in, actor, now)
		default:
			readErr = s.ingestNDJSON(br, in, actor, now)
		}
	}
	if err := in.finish(); err != nil {
		s.log.ErrorContext(ctx, "Ingest stopped: the database failed.", "actor", actor, "stored", in.stored,
			"stopped_at_line", in.storedThrough+1, "error", err)
		return apigen.Ingest503ApplicationProblemPlusJSONResponse{Headers: apigen.Ingest503ResponseHeaders{RetryAfter: ptr(5)},
			Body: in.stopped(http.StatusServiceUnavailable, "the database failed")}, nil
	}
	if in.result.Accepted > 0 && !in.acked {
		if err := s.catchUp(ctx); err != nil {
			return nil, err
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(readErr, &tooBig):
		return apigen.Ingest413ApplicationProblemPlusJSONResponse(in.stopped(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("the body is over %d bytes", tooBig.Limit), fieldErr("", "too large"))), nil
	case errors.Is(readErr, errEmptyBody):
		return apigen.Ingest400ApplicationProblemPlusJSONResponse(in.stopped(http.StatusBadRequest, "the body is empty",
			fieldErr("", "send at least one observation"))), nil
	case readErr != nil:
		var se *syntaxAt
		if errors.As(readErr, &se) {
			reason := se.Error()
			if !errors.Is(se.err, errAfterArray) {
				reason += "; the rest of the array was not read"
			}
			in.reject(se.element, apigen.IngestError{Reason: reason})
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A corrupt gzip stream, a connection that broke or went silent
		// past the read deadline.
		return apigen.Ingest400ApplicationProblemPlusJSONResponse(in.stopped(http.StatusBadRequest,
			"the body could not be read: "+readErr.Error(), fieldErr("", "unreadable"))), nil
	}
	return apigen.Ingest200JSONResponse(in.result), nil
}

var errEmptyBody = errors.New("empty body")

// syntaxAt is a JSON array broken at an element; decoding cannot go on past it.
type syntaxAt struct {
	element int64
	err     error
}

func (e *syntaxAt) Error() string {
	if errors.Is(e.err, errElementTooLong) || errors.Is(e.err, errAfterArray) {
		return e.err.Error()
	}
	return "malformed JSON: " + e.err.Error()
}

// arrayErr sorts an error of the array decoder: the body's own read errors
// (over the size limit, corrupt gzip, a broken connection) pass through; the
// rest break the array at element n.
func arrayErr(n int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, errElementTooLong) {
		return &syntaxAt{element: n, err: err}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &syntaxAt{element: n, err: err}
	}
	return err
}

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
		if err != nil && err != io.EOF && !errors.Is(err, errLineTooLong) {
			return err // the line is cut: it was not handled
		}
		line++
		if errors.Is(err, errLineTooLong) {
			in.reject(line, apigen.IngestError{Reason: fmt.Sprintf("line longer than %d bytes", maxLineBytes)})
			continue
		}
		if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 {
			row, bad := s.decodeLine(trimmed, actor, now, in.allowWide)
			if bad != nil {
				in.reject(line, *bad)
			} else if aerr := in.add(line, row); aerr != nil {
				return aerr
			}
		}
		if err == io.EOF {
			return nil
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

// elementLimit feeds a json.Decoder and fails once the element being decoded
// would need more than maxLineBytes: the decoder buffers a whole value before
// it returns it, so without this one huge element is held in memory whole.
type elementLimit struct {
	r    io.Reader
	left int64
}

var errElementTooLong = fmt.Errorf("element longer than %d bytes", maxLineBytes)

func (l *elementLimit) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errElementTooLong
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (s *Server) ingestArray(br *bufio.Reader, in *ingester, actor string, now time.Time) error {
	lim := &elementLimit{r: br, left: maxLineBytes}
	dec := json.NewDecoder(lim)
	if _, err := dec.Token(); err != nil { // the opening '['
		return arrayErr(1, err)
	}
	var n int64
	for dec.More() {
		n++
		// What the decoder holds already starts this element (separators
		// aside); the element may read up to the cap beyond that, plus
		// room for the separator and white space before it.
		lim.left = maxLineBytes + 4096 - int64(dec.Buffered().(interface{ Len() int }).Len())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return arrayErr(n, err)
		}
		row, bad := s.decodeLine(raw, actor, now, in.allowWide)
		if bad != nil {
			in.reject(n, *bad)
			continue
		}
		if err := in.add(n, row); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return arrayErr(n+1, err)
	}
	// Only white space may follow the array: anything else (a second
	// array, NDJSON lines) would otherwise be dropped unread.
	if b, err := peekNonSpace(bufio.NewReader(io.MultiReader(dec.Buffered(), br))); err == nil {
		return &syntaxAt{element: n + 1, err: fmt.Errorf("%w (%q)", errAfterArray, b)}
	} else if err != io.EOF {
		return err
	}
	return nil
}

// errAfterArray is data after a JSON array body's closing bracket.
var errAfterArray = errors.New("unexpected data after the array: a body is one JSON array or NDJSON lines, and nothing after the array was read")
