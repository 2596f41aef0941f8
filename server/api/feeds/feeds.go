// Package feeds implements the feeds and jobs operations of openapi/openapi.yaml
// (tags feeds and jobs): feed definitions, the catalogue, refreshes (River
// jobs), run history and the job queue summary.
package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/muninn/muninn/server/api"
	"github.com/muninn/muninn/server/api/apigen"
	"github.com/muninn/muninn/server/index"
	"github.com/muninn/muninn/server/store"
	"github.com/muninn/muninn/worker"
	"github.com/muninn/muninn/worker/source/feed"
)

// Inserter enqueues jobs; *river.Client[pgx.Tx] is one.
type Inserter interface {
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// Server implements the feeds and jobs methods of apigen.StrictServerInterface.
type Server struct {
	store *store.Store
	jobs  Inserter
	log   *slog.Logger
	ix    *index.Index
}

// New returns the feeds server; with jobs nil a refresh answers 503. ix is
// the in-memory index a write that changes views (deleting a feed and its
// assertions) brings up to date before answering.
func New(st *store.Store, jobs Inserter, log *slog.Logger, ix *index.Index) *Server {
	return &Server{store: st, jobs: jobs, log: log, ix: ix}
}

// problem is api.Problem: one problem type for every handler.
var problem = api.Problem

func notFound(name string) apigen.NotFoundApplicationProblemPlusJSONResponse {
	return apigen.NotFoundApplicationProblemPlusJSONResponse(problem(http.StatusNotFound, "no feed named "+name))
}

func actorOf(ctx context.Context) string {
	if p, ok := api.PrincipalFrom(ctx); ok {
		return p.Name
	}
	return "anonymous"
}

func durationText(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

func toAPI(f store.Feed) apigen.Feed {
	var o worker.FeedOptions
	_ = json.Unmarshal(f.Options, &o) // validated on the way in
	opts := apigen.FeedOptions{}
	if o.MinCount != 0 {
		opts.MinCount = &o.MinCount
	}
	if o.Column != 0 {
		opts.Column = &o.Column
	}
	if o.ColumnName != "" {
		opts.ColumnName = &o.ColumnName
	}
	if o.Comma != "" {
		opts.Comma = &o.Comma
	}
	if o.Header {
		opts.Header = &o.Header
	}
	return apigen.Feed{Name: f.Name, Url: feed.RedactURL(f.URL), Format: apigen.FeedFormat(f.Format), Options: opts,
		Tag: f.Tag, Classification: f.Classification, Ttl: durationText(f.TTL), Schedule: durationText(f.Schedule),
		Enabled: f.Enabled, MaxPrefixLenV4: f.MaxPrefixLenV4, MaxPrefixLenV6: f.MaxPrefixLenV6,
		MaxDropShare: f.MaxDropShare, LastRun: f.LastRun, LastSuccess: f.LastSuccess, Entries: f.Entries,
		Rejected: f.Rejected, LastError: f.LastError}
}

// ListFeeds lists every feed.
func (s *Server) ListFeeds(ctx context.Context, _ apigen.ListFeedsRequestObject) (apigen.ListFeedsResponseObject, error) {
	fs, err := s.store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	out := apigen.FeedList{Feeds: make([]apigen.Feed, len(fs))}
	for i, f := range fs {
		out.Feeds[i] = toAPI(f)
	}
	return apigen.ListFeeds200JSONResponse(out), nil
}

// ListFeedCatalog lists the built-in catalogue and which entries exist.
func (s *Server) ListFeedCatalog(ctx context.Context, _ apigen.ListFeedCatalogRequestObject) (apigen.ListFeedCatalogResponseObject, error) {
	fs, err := s.store.Feeds(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, f := range fs {
		have[f.Name] = true
	}
	cat := feed.Catalog()
	out := apigen.CatalogList{Feeds: make([]apigen.CatalogFeed, len(cat))}
	for i, c := range cat {
		added := have[c.Name]
		out.Feeds[i] = apigen.CatalogFeed{Name: c.Name, Url: c.URL, Format: apigen.FeedFormat(c.Format), Tag: c.Tag,
			Classification: c.Classification, Schedule: c.Schedule, Description: c.Description, Added: &added}
	}
	return apigen.ListFeedCatalog200JSONResponse(out), nil
}

// GetFeed returns one feed.
func (s *Server) GetFeed(ctx context.Context, req apigen.GetFeedRequestObject) (apigen.GetFeedResponseObject, error) {
	f, err := s.store.FeedByName(ctx, req.Name)
	if errors.Is(err, store.ErrNotFound) {
		return apigen.GetFeed404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	return apigen.GetFeed200JSONResponse(toAPI(f)), nil
}

// fromInput checks what the schema cannot and builds the stored definition.
func fromInput(name string, in apigen.FeedInput) (store.Feed, []apigen.FieldError) {
	var errs []apigen.FieldError
	bad := func(field, reason string) { errs = append(errs, apigen.FieldError{Field: "/" + field, Reason: reason}) }
	f := store.Feed{Name: name, URL: in.Url, Format: string(in.Format), Schedule: time.Hour, MaxDropShare: 0.5}
	if name == "catalog" {
		errs = append(errs, apigen.FieldError{Field: "name", Reason: `"catalog" is reserved`})
	}
	if u, err := url.Parse(in.Url); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		bad("url", "must be an http, https or file URL")
	}
	if in.Tag != nil {
		f.Tag = strings.TrimSpace(*in.Tag)
	}
	if in.Classification != nil {
		f.Classification = string(*in.Classification)
	}
	if f.Tag == "" && f.Classification == "" {
		bad("tag", "a feed needs a tag or a classification, or it asserts nothing")
	}
	if in.Schedule != nil && *in.Schedule != "" {
		d, err := time.ParseDuration(*in.Schedule)
		if err != nil || d < time.Minute {
			bad("schedule", "must be a duration of at least 1m, such as 1h")
		}
		f.Schedule = d
	}
	if in.Ttl != nil && *in.Ttl != "" {
		d, err := time.ParseDuration(*in.Ttl)
		if err != nil || d <= 0 {
			bad("ttl", "must be a positive duration such as 48h, or empty for never")
		}
		f.TTL = d
	}
	if in.Enabled != nil {
		f.Enabled = *in.Enabled
	}
	if in.MaxPrefixLenV4 != nil {
		f.MaxPrefixLenV4 = *in.MaxPrefixLenV4
	}
	if in.MaxPrefixLenV6 != nil {
		f.MaxPrefixLenV6 = *in.MaxPrefixLenV6
	}
	if in.MaxDropShare != nil {
		f.MaxDropShare = *in.MaxDropShare
	}
	var o worker.FeedOptions
	if in.Options != nil {
		o = worker.FeedOptions{MinCount: deref(in.Options.MinCount), Column: deref(in.Options.Column),
			ColumnName: deref(in.Options.ColumnName), Comma: deref(in.Options.Comma), Header: deref(in.Options.Header)}
	}
	raw, err := json.Marshal(o)
	if err != nil {
		bad("options", err.Error())
	}
	f.Options = raw
	if _, err := worker.ParserOptions(f); err != nil {
		bad("options", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "worker: feed "+name+" options: "), "feed: "))
	}
	return f, errs
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// PutFeed creates or replaces a feed definition.
func (s *Server) PutFeed(ctx context.Context, req apigen.PutFeedRequestObject) (apigen.PutFeedResponseObject, error) {
	f, errs := fromInput(req.Name, *req.Body)
	if len(errs) > 0 {
		return apigen.PutFeed400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: apigen.BadRequestApplicationProblemPlusJSONResponse(problem(http.StatusBadRequest, "the feed is not valid", errs...))}, nil
	}
	created, err := s.store.PutFeed(ctx, f, actorOf(ctx))
	if err != nil {
		return nil, err
	}
	stored, err := s.store.FeedByName(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	if created {
		return apigen.PutFeed201JSONResponse(toAPI(stored)), nil
	}
	return apigen.PutFeed200JSONResponse(toAPI(stored)), nil
}

// DeleteFeed removes a feed and its assertions.
func (s *Server) DeleteFeed(ctx context.Context, req apigen.DeleteFeedRequestObject) (apigen.DeleteFeedResponseObject, error) {
	err := s.store.DeleteFeed(ctx, req.Name, actorOf(ctx))
	if errors.Is(err, store.ErrNotFound) {
		return apigen.DeleteFeed404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.ix.CatchUp(ctx); err != nil {
		return nil, fmt.Errorf("feeds: catch up the index: %w", err)
	}
	return apigen.DeleteFeed204Response{}, nil
}

// RefreshFeed enqueues a refresh job; a second request while one is queued
// or running is answered with the existing job and duplicate true.
func (s *Server) RefreshFeed(ctx context.Context, req apigen.RefreshFeedRequestObject) (apigen.RefreshFeedResponseObject, error) {
	if _, err := s.store.FeedByName(ctx, req.Name); errors.Is(err, store.ErrNotFound) {
		return apigen.RefreshFeed404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(req.Name)}, nil
	} else if err != nil {
		return nil, err
	}
	if s.jobs == nil {
		return apigen.RefreshFeed503ApplicationProblemPlusJSONResponse{UnavailableApplicationProblemPlusJSONResponse: apigen.UnavailableApplicationProblemPlusJSONResponse{
			Body: problem(http.StatusServiceUnavailable, "this server has no job queue; refresh through one that runs workers")}}, nil
	}
	force := deref(req.Params.Force)
	res, err := s.jobs.Insert(ctx, worker.FeedRefreshArgs{Name: req.Name, Force: force}, nil)
	if err != nil {
		return nil, fmt.Errorf("feeds: enqueue refresh: %w", err)
	}
	return apigen.RefreshFeed202JSONResponse{JobId: res.Job.ID, Duplicate: res.UniqueSkippedAsDuplicate, Force: force}, nil
}

// ListFeedRuns returns a feed's newest runs.
func (s *Server) ListFeedRuns(ctx context.Context, req apigen.ListFeedRunsRequestObject) (apigen.ListFeedRunsResponseObject, error) {
	limit := 50
	if req.Params.Limit != nil {
		limit = *req.Params.Limit
	}
	runs, err := s.store.FeedRuns(ctx, req.Name, limit)
	if errors.Is(err, store.ErrNotFound) {
		return apigen.ListFeedRuns404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(req.Name)}, nil
	}
	if err != nil {
		return nil, err
	}
	out := apigen.FeedRunList{Runs: make([]apigen.FeedRun, len(runs))}
	for i, r := range runs {
		out.Runs[i] = apigen.FeedRun{Id: r.ID, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
			Status: apigen.FeedRunStatus(r.Status), Forced: r.Forced, Lines: r.Lines, Entries: r.Entries,
			Added: r.Added, Removed: r.Removed, Rejected: r.Rejected, Duplicates: r.Duplicates, Error: r.Error,
			RejectedLines: make([]apigen.RejectedLine, len(r.RejectedLines))}
		for j, l := range r.RejectedLines {
			out.Runs[i].RejectedLines[j] = apigen.RejectedLine{Line: l.Line, Text: l.Text, Reason: l.Reason}
		}
	}
	return apigen.ListFeedRuns200JSONResponse(out), nil
}

// GetJobs summarises the job queue.
func (s *Server) GetJobs(ctx context.Context, req apigen.GetJobsRequestObject) (apigen.GetJobsResponseObject, error) {
	n := 20
	if req.Params.Failures != nil {
		n = *req.Params.Failures
	}
	sum, err := s.store.JobSummary(ctx, n)
	if err != nil {
		return nil, err
	}
	out := apigen.JobSummary{Counts: make([]apigen.JobCount, len(sum.Counts)), Failures: make([]apigen.JobFailure, len(sum.Failures))}
	for i, c := range sum.Counts {
		out.Counts[i] = apigen.JobCount{Kind: c.Kind, State: c.State, Count: c.Count}
	}
	for i, f := range sum.Failures {
		jf := apigen.JobFailure{Id: f.ID, Kind: f.Kind, State: f.State, Attempt: f.Attempt, Error: f.Error, At: f.At}
		var args map[string]any
		if json.Unmarshal(f.Args, &args) == nil {
			jf.Args = &args
		}
		out.Failures[i] = jf
	}
	return apigen.GetJobs200JSONResponse(out), nil
}
