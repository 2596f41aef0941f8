package bouncer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/muninn/muninn/bouncer/apiclient"
)

// API is the server side the bouncer talks to. Client implements it over the generated
// client of bouncer/apiclient; tests replace it.
type API interface {
	// Render long-polls for renders newer than since (ruleset -> version). It returns
	// notModified when nothing changed within wait.
	Render(ctx context.Context, since map[string]int64, wait time.Duration) (resp *RenderResponse, notModified bool, err error)
	// Heartbeat reports the applied versions, counters and the last error.
	Heartbeat(ctx context.Context, hb Heartbeat) error
	// Report sends honeypot hits.
	Report(ctx context.Context, r Report) error
}

// CallTimeout bounds a heartbeat or a report, and LongPollMargin is what a
// render request gets on top of its wait (the server answers at the wait's
// end; the margin covers the network and a full render's body). Without them
// a half-open connection would stall updates until the kernel gives up on it.
const (
	CallTimeout    = 30 * time.Second
	LongPollMargin = 30 * time.Second
)

// Client implements API with the client generated from openapi/openapi.yaml.
type Client struct {
	gen *apiclient.Client
	// err is a configuration error (a bad base URL), returned by every call.
	err error
	// call and margin are CallTimeout and LongPollMargin unless WithTimeouts
	// changed them.
	call, margin time.Duration
}

var _ API = (*Client)(nil)

// NewClient returns a Client for the server at base (e.g. https://muninn:8080) using
// the bouncer key. hc may be nil; requests are bounded by their contexts. A malformed
// base makes every call fail with the reason.
func NewClient(base, key string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	setKey := func(_ context.Context, req *http.Request) error {
		req.Header.Set("X-Api-Key", key)
		return nil
	}
	server := strings.TrimRight(base, "/") + "/api/v1/"
	if _, err := url.Parse(server); err != nil {
		return &Client{err: fmt.Errorf("api: server %q: %w", base, err)}
	}
	gen, err := apiclient.NewClient(server,
		apiclient.WithHTTPClient(hc), apiclient.WithRequestEditorFn(setKey))
	if err != nil {
		return &Client{err: fmt.Errorf("api: server %q: %w", base, err)}
	}
	return &Client{gen: gen, call: CallTimeout, margin: LongPollMargin}
}

// WithTimeouts sets the bound of a heartbeat or report (call) and what a
// render request gets on top of its wait (margin), and returns c.
func (c *Client) WithTimeouts(call, margin time.Duration) *Client {
	c.call, c.margin = call, margin
	return c
}

// WithUserAgent sends ua (e.g. "muninn-bouncer/1.4.0") as the User-Agent of
// every request, so the server's logs name the bouncer's version; the
// heartbeat carries it too. It returns c.
func (c *Client) WithUserAgent(ua string) *Client {
	if c.gen != nil {
		c.gen.RequestEditors = append(c.gen.RequestEditors, func(_ context.Context, req *http.Request) error {
			req.Header.Set("User-Agent", ua)
			return nil
		})
	}
	return c
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

// Render implements API. The body is decoded straight into the wire types: a full
// render can hold a million prefixes, too many to decode twice.
func (c *Client) Render(ctx context.Context, since map[string]int64, wait time.Duration) (*RenderResponse, bool, error) {
	if c.err != nil {
		return nil, false, c.err
	}
	var params apiclient.GetBouncerRenderParams
	if len(since) > 0 {
		b, err := json.Marshal(since)
		if err != nil {
			return nil, false, fmt.Errorf("api: render: encode since: %w", err)
		}
		s := string(b)
		params.Since = &s
	}
	if wait > 0 {
		w := wait.String()
		params.Wait = &w
	}
	ctx, cancel := context.WithTimeout(ctx, wait+c.margin)
	defer cancel()
	resp, err := c.gen.GetBouncerRender(ctx, &params, func(_ context.Context, req *http.Request) error {
		req.Header.Set("Accept", "application/json")
		return nil
	})
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
	if c.err != nil {
		return c.err
	}
	if hb.Applied == nil {
		hb.Applied = map[string]int64{}
	}
	if hb.Counters == nil {
		hb.Counters = []RuleCounter{}
	}
	ctx, cancel := context.WithTimeout(ctx, c.call)
	defer cancel()
	resp, err := c.gen.PostBouncerHeartbeat(ctx, hb)
	return done("heartbeat", resp, err)
}

// Report implements API.
func (c *Client) Report(ctx context.Context, r Report) error {
	if c.err != nil {
		return c.err
	}
	if r.Honeypot == nil {
		r.Honeypot = []HoneypotHit{}
	}
	ctx, cancel := context.WithTimeout(ctx, c.call)
	defer cancel()
	resp, err := c.gen.PostBouncerReports(ctx, r)
	return done("report", resp, err)
}

// done turns the outcome of a POST into an error: any 2xx is success.
func done(op string, resp *http.Response, err error) error {
	if err != nil {
		return fmt.Errorf("api: %s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(op, resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func statusError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return &StatusError{Op: op, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}

// ServerAddrs resolves the host of the server URL base (e.g.
// https://muninn.example:8080) to the addresses the firewall accepts before
// any rule, so no rule can cut the bouncer off from its server. An IP literal
// is its own answer; a name goes to lookup (net.DefaultResolver.LookupNetIP).
func ServerAddrs(ctx context.Context, base string, lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)) ([]netip.Addr, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("api: server %q: %w", base, err)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("api: server %q: no host", base)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}, nil
	}
	addrs, err := lookup(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("api: resolve server %s: %w", host, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap().WithZone(""))
	}
	return out, nil
}

// SendEvents posts lines of w's format to POST /events with the bouncer key
// (the server files them under the bouncer's own name). Lines the server
// rejects one by one are answered 200 and count as sent; any other answer
// is an error, so a Watcher retries them.
func (c *Client) SendEvents(ctx context.Context, w Watch, lines []string) error {
	if c.err != nil {
		return c.err
	}
	ctx, cancel := context.WithTimeout(ctx, c.call)
	defer cancel()
	format := apiclient.PostEventsParamsFormat(w.Format)
	params := &apiclient.PostEventsParams{Format: &format}
	body := strings.Join(lines, "\n") + "\n"
	resp, err := c.gen.PostEventsWithBody(ctx, params, "text/plain", strings.NewReader(body))
	return done("events", resp, err)
}
