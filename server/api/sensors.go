package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/sensor"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker/source/feed"
)

// eventLine is one NDJSON line of POST /events without ?format= (the
// contract's EventLine).
type eventLine struct {
	Format string `json:"format"`
	Line   string `json:"line"`
	Host   string `json:"host"`
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// eventsReader turns the lines of one POST /events body into stored events:
// it parses on the request's goroutine and stores batches on its own, like
// the ingester, so parsing overlaps the database.
type eventsReader struct {
	s       *Server
	actor   string
	now     time.Time
	host    string // forced (bouncer) or default host
	forced  bool
	parsers map[string]*sensor.Parser
	fixed   *sensor.Parser
	// client is the address the request came from: the reporting host's
	// own (or its pipeline's), never tagged.
	client netip.Addr

	batch   []store.SensorEvent
	work    chan eventsBatch
	done    chan struct{}
	failed  atomic.Bool
	result  apigen.EventsResult
	line    int64
	pending int64
	// Written by the writer goroutine; read after done is closed.
	err                     error
	stored                  int64
	storedThrough, rejected int64
	fired                   int
}

type eventsBatch struct {
	rows              []store.SensorEvent
	through, rejected int64
	lines             int64
}

func (s *Server) newEventsReader(ctx context.Context, actor string, now time.Time) *eventsReader {
	er := &eventsReader{s: s, actor: actor, now: now, parsers: map[string]*sensor.Parser{}, work: make(chan eventsBatch, 1), done: make(chan struct{})}
	er.result.Errors = []apigen.IngestError{}
	go func() {
		defer close(er.done)
		for b := range er.work {
			if er.err != nil {
				continue
			}
			fired, err := s.store.StoreSensorEvents(ctx, b.rows, actor, s.now())
			if err != nil {
				er.err = err
				er.failed.Store(true)
				continue
			}
			er.fired += len(fired)
			er.stored += b.lines
			if s.opts.Observed != nil {
				s.opts.Observed("sensor", len(b.rows))
			}
			er.storedThrough, er.rejected = b.through, b.rejected
		}
	}()
	return er
}

func (er *eventsReader) reject(line int64, reason string) {
	er.rejectField(line, nil, reason)
}

// rejectField rejects line for reason about field (a JSON pointer; nil:
// the line as a whole).
func (er *eventsReader) rejectField(line int64, field *string, reason string) {
	er.line = line
	er.result.Rejected++
	if len(er.result.Errors) < maxIngestErrors {
		er.result.Errors = append(er.result.Errors, bounded(apigen.IngestError{Line: line, Field: field, Reason: reason}))
	}
}

// eventLineObject names an EventLine's object and fields in errors.
var eventLineObject = jsonObject{what: "an EventLine", fields: []string{"format", "line", "host"}}

// parser returns the stream's parser of format (one per format per body:
// Zeek TSV headers and dnsmasq serials span lines).
func (er *eventsReader) parser(format string) (*sensor.Parser, error) {
	if p := er.parsers[format]; p != nil {
		return p, nil
	}
	if format == "regex" {
		return nil, errors.New("the regex format needs ?format=regex&pattern=")
	}
	p, err := sensor.NewParser(format, sensor.Options{Now: er.now})
	if err != nil {
		return nil, err
	}
	er.parsers[format] = p
	return p, nil
}

// handle parses one non-empty line and queues its events.
func (er *eventsReader) handle(line int64, raw []byte) error {
	if !utf8.Valid(raw) {
		er.reject(line, "is not valid UTF-8")
		return nil
	}
	p, text, host := er.fixed, string(raw), ""
	if p == nil {
		var el eventLine
		if err := eventLineObject.decode(raw, &el); err != nil {
			e := eventLineObject.explain(err)
			er.rejectField(line, e.Field, e.Reason)
			return nil
		}
		if el.Format == "" || el.Line == "" {
			er.reject(line, "an EventLine needs format and line (or send ?format= with raw lines)")
			return nil
		}
		if el.Host != "" && !hostName.MatchString(el.Host) {
			er.reject(line, "host must be 1–100 letters, digits or ._- starting with a letter or digit")
			return nil
		}
		var err error
		if p, err = er.parser(el.Format); err != nil {
			er.rejectField(line, ptr("/format"), strings.TrimPrefix(err.Error(), "sensor: "))
			return nil
		}
		text, host = el.Line, el.Host
	}
	if reason := TextProblem(text); reason != "" {
		er.reject(line, reason)
		return nil
	}
	evs, err := p.Parse(text)
	if err != nil {
		er.reject(line, err.Error())
		return nil
	}
	for _, ev := range evs {
		if ev.At.IsZero() {
			continue // no time in the line: it is now
		}
		if reason := timeProblem(ev.At, er.now); reason != "" {
			er.reject(line, fmt.Sprintf("its time %s %s", ev.At.Format(time.RFC3339), reason))
			return nil
		}
	}
	if er.failed.Load() {
		return errIngestStopped
	}
	er.line = line
	er.result.Accepted++
	er.pending++
	for _, ev := range evs {
		h := er.host
		switch {
		case er.forced:
		case host != "":
			h = host
		case ev.Host != "" && hostName.MatchString(ev.Host):
			h = ev.Host
		}
		if h == "" {
			h = "unknown"
		}
		at := ev.At
		if at.IsZero() {
			at = er.now
		}
		se := store.SensorEvent{Addr: ev.Addr, Kind: ev.Kind, Host: h, Format: p.Format(), At: at, Line: text, Private: er.own(ev.Addr)}
		if ev.DNS != nil {
			se.DNS = &store.PassiveDNS{Name: ev.DNS.Name, Client: ev.DNS.Client}
		}
		er.batch = append(er.batch, se)
		er.result.Events++
	}
	if len(er.batch) >= er.s.opts.IngestBatch {
		er.flush()
	}
	return nil
}

// own reports whether a is counted but not tagged by default: private,
// loopback and the like (sensor.Private), the address the request came
// from (the reporting host, or the pipeline sending for it) and the
// configured own addresses of the sensor hosts.
func (er *eventsReader) own(a netip.Addr) bool {
	return sensor.Private(a) || a == er.client || inPrefixes(a, er.s.opts.SensorOwnAddresses)
}

func (er *eventsReader) flush() {
	er.work <- eventsBatch{rows: er.batch, through: er.line, rejected: er.result.Rejected, lines: er.pending}
	er.batch, er.pending = nil, 0
}

func (er *eventsReader) finish() error {
	if len(er.batch) > 0 || er.pending > 0 {
		er.flush()
	}
	close(er.work)
	<-er.done
	if er.err != nil {
		return er.err
	}
	er.storedThrough, er.rejected = er.line, er.result.Rejected
	return nil
}

func (er *eventsReader) stopped(status int, detail string, fields ...apigen.FieldError) apigen.IngestProblem {
	return stoppedProblem(status, detail, "lines were", er.stored, er.rejected, er.storedThrough, fields...)
}

// PostEvents implements POST /events: raw log lines (?format=) or EventLine
// NDJSON, streamed, parsed by server/sensor, stored with StoreSensorEvents.
func (s *Server) PostEvents(ctx context.Context, req apigen.PostEventsRequestObject) (apigen.PostEventsResponseObject, error) {
	if req.Body == nil {
		// The contract layer refused any non-empty body of another media
		// type (415); what reaches here without one was empty.
		return apigen.PostEvents400ApplicationProblemPlusJSONResponse(stoppedProblem(http.StatusBadRequest, "the body is empty", "lines were", 0, 0, 0,
			fieldErr("", "send at least one line"))), nil
	}
	actor := actorOf(ctx)
	b, isBouncer := BouncerFrom(ctx)
	if isBouncer {
		actor = "bouncer:" + b.Name
	}
	er := s.newEventsReader(ctx, actor, s.now())
	er.client = clientAddr(ctx)
	if isBouncer {
		er.host, er.forced = b.Name, true
	} else if req.Params.Host != nil {
		er.host = *req.Params.Host
	}
	if req.Params.Format != nil {
		p, err := sensor.NewParser(string(*req.Params.Format), sensor.Options{Now: er.now, Pattern: deref(req.Params.Pattern), Kind: deref(req.Params.Kind)})
		if err != nil {
			close(er.work)
			<-er.done
			field := "format"
			if *req.Params.Format == "regex" {
				field = "pattern"
			}
			return apigen.PostEvents400ApplicationProblemPlusJSONResponse(er.stopped(http.StatusBadRequest, "the parameters are not valid",
				fieldErr(field, strings.TrimPrefix(err.Error(), "sensor: ")))), nil
		}
		er.fixed = p
	}
	br := bufio.NewReaderSize(req.Body, 256<<10)
	readErr := feed.SkipBOM(br)
	var line, nonBlank int64
	for readErr == nil {
		raw, err := readLine(br)
		if len(raw) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF && !errors.Is(err, errLineTooLong) {
			readErr = err
			break
		}
		line++
		if errors.Is(err, errLineTooLong) {
			er.reject(line, fmt.Sprintf("line longer than %d bytes", maxLineBytes))
			continue
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			nonBlank++
			if herr := er.handle(line, raw); herr != nil {
				readErr = herr
				break
			}
		}
		if err == io.EOF {
			break
		}
	}
	if readErr == nil && nonBlank == 0 {
		readErr = errEmptyBody
	}
	if err := er.finish(); err != nil {
		s.log.ErrorContext(ctx, "Events stopped: the database failed.", "actor", actor, "stored", er.stored,
			"stopped_at_line", er.storedThrough+1, "error", err)
		return apigen.PostEvents503ApplicationProblemPlusJSONResponse{Headers: apigen.PostEvents503ResponseHeaders{RetryAfter: ptr(5)},
			Body: er.stopped(http.StatusServiceUnavailable, "the database failed")}, nil
	}
	if er.stored > 0 {
		if err := s.catchUp(ctx); err != nil {
			return nil, err
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(readErr, &tooBig):
		return apigen.PostEvents413ApplicationProblemPlusJSONResponse(er.stopped(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("the body is over %d bytes", tooBig.Limit), fieldErr("", "too large"))), nil
	case errors.Is(readErr, errEmptyBody):
		return apigen.PostEvents400ApplicationProblemPlusJSONResponse(er.stopped(http.StatusBadRequest, "the body is empty",
			fieldErr("", "send at least one line"))), nil
	case readErr != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return apigen.PostEvents400ApplicationProblemPlusJSONResponse(er.stopped(http.StatusBadRequest,
			"the body could not be read: "+readErr.Error(), fieldErr("", "unreadable"))), nil
	}
	return apigen.PostEvents200JSONResponse(er.result), nil
}

func detectionOut(d store.Detection) apigen.Detection {
	return apigen.Detection{Name: d.Name, Kinds: nonNilStrings(d.Kinds), InstantKinds: nonNilStrings(d.InstantKinds), Threshold: d.Threshold,
		Window: d.Window.String(), Tag: d.Tag, Ttl: d.TTL.String(), MaxTtl: d.MaxTTL.String(), Quiet: d.Quiet.String(),
		IncludePrivate: d.IncludePrivate, Enabled: d.Enabled}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ListDetections implements GET /detections.
func (s *Server) ListDetections(ctx context.Context, _ apigen.ListDetectionsRequestObject) (apigen.ListDetectionsResponseObject, error) {
	ds, err := s.store.Detections(ctx)
	if err != nil {
		return nil, err
	}
	out := make(apigen.ListDetections200JSONResponse, 0, len(ds))
	for _, d := range ds {
		out = append(out, detectionOut(d))
	}
	return out, nil
}

// DetectionFromInput checks the body of PUT /detections/{name} and returns
// the rule it describes, or the field (a JSON pointer) and why it is not
// valid. The API and the UI both use it.
func DetectionFromInput(name string, b apigen.DetectionInput) (store.Detection, *apigen.FieldError) {
	d := store.Detection{Name: name, Kinds: b.Kinds, Threshold: b.Threshold, Tag: b.Tag, IncludePrivate: deref(b.IncludePrivate), Enabled: true,
		MaxTTL: 30 * 24 * time.Hour, Quiet: 7 * 24 * time.Hour}
	bad := func(field, reason string) (store.Detection, *apigen.FieldError) {
		fe := fieldErr(field, reason)
		return store.Detection{}, &fe
	}
	if b.InstantKinds != nil {
		d.InstantKinds = *b.InstantKinds
	}
	if b.Enabled != nil {
		d.Enabled = *b.Enabled
	}
	if len(d.Kinds)+len(d.InstantKinds) == 0 {
		return bad("/kinds", "kinds or instant_kinds must name at least one kind")
	}
	if d.Threshold < 1 || d.Threshold > 100_000 {
		return bad("/threshold", "must be between 1 and 100000")
	}
	if reason := tagNameProblem(d.Tag); reason != "" {
		return bad("/tag", reason)
	}
	for _, f := range []struct {
		field string
		raw   *string
		dst   *time.Duration
	}{{"/window", &b.Window, &d.Window}, {"/ttl", &b.Ttl, &d.TTL}, {"/max_ttl", b.MaxTtl, &d.MaxTTL}, {"/quiet", b.Quiet, &d.Quiet}} {
		if f.raw == nil {
			continue
		}
		v, err := time.ParseDuration(*f.raw)
		if err != nil || v <= 0 || v > maxTTL {
			return bad(f.field, "must be a positive duration such as \"10m\", at most 10 years")
		}
		*f.dst = v
	}
	if d.MaxTTL < d.TTL {
		return bad("/max_ttl", "must be at least ttl")
	}
	return d, nil
}

// PutDetection implements PUT /detections/{name}.
func (s *Server) PutDetection(ctx context.Context, req apigen.PutDetectionRequestObject) (apigen.PutDetectionResponseObject, error) {
	d, fe := DetectionFromInput(req.Name, *req.Body)
	if fe != nil {
		return apigen.PutDetection400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(
			problem(http.StatusBadRequest, "the detection is not valid", *fe))}, nil
	}
	if err := s.store.PutDetection(ctx, d); err != nil {
		return nil, err
	}
	return apigen.PutDetection200JSONResponse(detectionOut(d)), nil
}

// DeleteDetection implements DELETE /detections/{name}.
func (s *Server) DeleteDetection(ctx context.Context, req apigen.DeleteDetectionRequestObject) (apigen.DeleteDetectionResponseObject, error) {
	err := s.store.DeleteDetection(ctx, req.Name)
	if errors.Is(err, store.ErrNotFound) {
		return apigen.DeleteDetection404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: apigen.NotFoundApplicationProblemPlusJSONResponse(
			problem(http.StatusNotFound, "no detection "+req.Name))}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.DeleteDetection204Response{}, nil
}
