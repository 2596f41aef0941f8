package feed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// ErrTooLarge is returned (wrapped) when a feed body exceeds the size limit,
// either up front from Content-Length or file size, or while reading.
var ErrTooLarge = errors.New("feed: body exceeds size limit")

// Fetch opens the feed at rawURL (http, https or file). etag and lastModified
// are the validators of the previous fetch; when the source reports the
// content unchanged, Fetch returns notModified and no body. maxBytes bounds
// the body (<= 0 means no limit): a larger body fails with ErrTooLarge, up
// front when the size is known, otherwise from Read once the limit is passed.
// The caller closes body.
func Fetch(ctx context.Context, client *http.Client, rawURL, etag, lastModified string, maxBytes int64) (body io.ReadCloser, newETag, newLastModified string, notModified bool, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch: parse url: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
		return fetchHTTP(ctx, client, u, etag, lastModified, maxBytes)
	case "file":
		return fetchFile(u, etag, lastModified, maxBytes)
	default:
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: unsupported scheme %q", redact(u), u.Scheme)
	}
}

// redact hides credentials that a feed URL may carry in its user info or
// query (some providers put licence keys there) from error messages.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.Redacted()
}

func fetchHTTP(ctx context.Context, client *http.Client, u *url.URL, etag, lastModified string, maxBytes int64) (io.ReadCloser, string, string, bool, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", redact(u), err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if lastModified != "" {
		req.Header.Set("If-Modified-Since", lastModified)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", redact(u), err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		resp.Body.Close()
		// Some servers omit the validators on 304: keep the old ones.
		return nil, firstNonEmpty(resp.Header.Get("ETag"), etag), firstNonEmpty(resp.Header.Get("Last-Modified"), lastModified), true, nil
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: unexpected status %s", redact(u), resp.Status)
	}
	if maxBytes > 0 && resp.ContentLength > maxBytes {
		resp.Body.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: content length %d over %d bytes: %w", redact(u), resp.ContentLength, maxBytes, ErrTooLarge)
	}
	return limitBody(resp.Body, maxBytes), resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), false, nil
}

func fetchFile(u *url.URL, etag, lastModified string, maxBytes int64) (io.ReadCloser, string, string, bool, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: remote file host %q not supported", u, u.Host)
	}
	if u.Path == "" {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: file URL needs an absolute path (file:///...)", u)
	}
	f, err := os.Open(u.Path)
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", u, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", u, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: is a directory", u)
	}
	// A file's validators mirror what a web server would send: size and
	// modification time make the ETag, the time alone Last-Modified.
	newETag := `"` + strconv.FormatInt(st.Size(), 16) + "-" + strconv.FormatInt(st.ModTime().UnixNano(), 16) + `"`
	newLM := st.ModTime().UTC().Format(http.TimeFormat)
	if (etag != "" && etag == newETag) || (etag == "" && lastModified != "" && notModifiedSince(st.ModTime(), lastModified)) {
		f.Close()
		return nil, newETag, newLM, true, nil
	}
	if maxBytes > 0 && st.Size() > maxBytes {
		f.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: file size %d over %d bytes: %w", u, st.Size(), maxBytes, ErrTooLarge)
	}
	return limitBody(f, maxBytes), newETag, newLM, false, nil
}

func notModifiedSince(mod time.Time, since string) bool {
	t, err := http.ParseTime(since)
	return err == nil && !mod.Truncate(time.Second).After(t)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func limitBody(rc io.ReadCloser, maxBytes int64) io.ReadCloser {
	if maxBytes <= 0 {
		return rc
	}
	return &limitedBody{rc: rc, left: maxBytes}
}

// limitedBody fails with ErrTooLarge once more than the limit has been read,
// unlike io.LimitReader which would end the stream silently and make a cut
// feed look complete.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	// Read one byte past the limit to tell "exactly the limit" from "more".
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n - 1, ErrTooLarge
	}
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
