package bouncer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// API is the server side the bouncer talks to. The hand-written Client implements it;
// a generated client can replace it behind the same interface.
type API interface {
	// Render long-polls for renders newer than since (ruleset -> version). It returns
	// notModified when nothing changed within wait.
	Render(ctx context.Context, since map[string]int64, wait time.Duration) (resp *RenderResponse, notModified bool, err error)
	// Heartbeat reports the applied versions, counters and the last error.
	Heartbeat(ctx context.Context, hb Heartbeat) error
	// Report sends honeypot hits.
	Report(ctx context.Context, r Report) error
}

// Client is a small net/http client for the bouncer endpoints.
type Client struct {
	base string
	key  string
	http *http.Client
}

var _ API = (*Client)(nil)

// NewClient returns a Client for the server at base (e.g. https://muninn:8080) using
// the bouncer key. hc may be nil; requests are bounded by their contexts.
func NewClient(base, key string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(base, "/"), key: key, http: hc}
}

// StatusError is a response with an unexpected status.
type StatusError struct {
	Op     string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("api: %s: status %d: %s", e.Op, e.Status, e.Body)
}

// Render implements API.
func (c *Client) Render(ctx context.Context, since map[string]int64, wait time.Duration) (*RenderResponse, bool, error) {
	q := url.Values{}
	if len(since) > 0 {
		b, err := json.Marshal(since)
		if err != nil {
			return nil, false, fmt.Errorf("api: render: encode since: %w", err)
		}
		q.Set("since", string(b))
	} else {
		q.Set("since", "")
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/bouncer/render?"+q.Encode(), nil)
	if err != nil {
		return nil, false, fmt.Errorf("api: render: %w", err)
	}
	req.Header.Set("X-Api-Key", c.key)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("api: render: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, true, nil
	case http.StatusOK:
	default:
		return nil, false, statusError("render", resp)
	}
	var out RenderResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, false, fmt.Errorf("api: render: decode: %w", err)
	}
	return &out, false, nil
}

// Heartbeat implements API.
func (c *Client) Heartbeat(ctx context.Context, hb Heartbeat) error {
	return c.post(ctx, "heartbeat", "/api/v1/bouncer/heartbeat", hb, http.StatusNoContent)
}

// Report implements API.
func (c *Client) Report(ctx context.Context, r Report) error {
	return c.post(ctx, "report", "/api/v1/bouncer/reports", r, http.StatusAccepted)
}

func (c *Client) post(ctx context.Context, op, path string, body any, want int) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("api: %s: encode: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("api: %s: %w", op, err)
	}
	req.Header.Set("X-Api-Key", c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want && resp.StatusCode/100 != 2 {
		return statusError(op, resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func statusError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return &StatusError{Op: op, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}
