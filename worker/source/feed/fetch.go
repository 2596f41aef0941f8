package feed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrTooLarge is returned (wrapped) when a feed body exceeds the size limit,
// either up front from Content-Length or file size, or while reading.
var ErrTooLarge = errors.New("feed: body exceeds size limit")

// FetchPolicy says where feeds may be fetched from.
type FetchPolicy struct {
	// Allow names destinations that are otherwise refused: loopback,
	// private, link-local, multicast and unspecified addresses (a feed URL
	// must not become a way to read the server's own network, or a cloud
	// metadata service).
	Allow []netip.Prefix
	// FileDir is the only directory file:// URLs may read; empty refuses
	// every file:// URL.
	FileDir string
	// Timeout bounds one HTTP fetch, download included (0: 5 minutes).
	Timeout time.Duration
}

// Fetcher fetches feeds under a FetchPolicy.
type Fetcher struct {
	client  *http.Client
	fileDir string
}

// NewFetcher returns a Fetcher for p. Its HTTP client checks every address
// it dials, after DNS and for every redirect alike, and uses no proxy (the
// proxy's address would be the one checked).
func NewFetcher(p FetchPolicy) *Fetcher {
	if p.Timeout <= 0 {
		p.Timeout = 5 * time.Minute
	}
	allow := slices.Clone(p.Allow)
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("feed: dial %s: %w", address, err)
			}
			return checkDestination(ap.Addr(), allow)
		}}
	// No keep-alives: feeds are fetched minutes apart, and an idle pooled
	// connection that receives bytes makes net/http log them verbatim.
	tr := &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, DisableKeepAlives: true,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: time.Minute}
	return &Fetcher{client: &http.Client{Transport: tr, Timeout: p.Timeout}, fileDir: p.FileDir}
}

// ErrForbiddenDestination is returned (wrapped) for a fetch that would reach
// an address the policy refuses.
var ErrForbiddenDestination = errors.New("destination not allowed")

// forbidden is the error of a refused destination.
type forbidden struct {
	addr netip.Addr
	kind string
}

func (f *forbidden) Error() string {
	return fmt.Sprintf("%s is %s address (MUNINN_FEED_ALLOW_NETWORKS can allow it)", f.addr, f.kind)
}

func (f *forbidden) Is(target error) bool { return target == ErrForbiddenDestination }

// checkDestination refuses the special-purpose addresses a feed has no
// business reaching, unless allow names them.
func checkDestination(a netip.Addr, allow []netip.Prefix) error {
	a = a.Unmap()
	var kind string
	switch {
	case a.IsLoopback():
		kind = "a loopback"
	case a.IsPrivate():
		kind = "a private"
	case a.IsLinkLocalUnicast():
		kind = "a link-local"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		kind = "a multicast"
	case a.IsUnspecified():
		kind = "an unspecified"
	case a.Is4() && a.As4()[0] == 100 && a.As4()[1]&0xC0 == 64:
		kind = "a shared (carrier-grade NAT)" // 100.64.0.0/10
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		kind = "the broadcast"
	default:
		return nil
	}
	for _, p := range allow {
		if p.Contains(a) {
			return nil
		}
	}
	return &forbidden{addr: a, kind: kind}
}

// Fetch opens the feed at rawURL (http, https or file). etag and lastModified
// are the validators of the previous fetch; when the source reports the
// content unchanged, Fetch returns notModified and no body. maxBytes bounds
// the body (<= 0 means no limit): a larger body fails with ErrTooLarge, up
// front when the size is known, otherwise from Read once the limit is passed.
// Errors name the URL redacted and describe the failure without the peer's
// bytes. The caller closes body.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, etag, lastModified string, maxBytes int64) (body io.ReadCloser, newETag, newLastModified string, notModified bool, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", "", false, errors.New("feed: fetch: the URL does not parse")
	}
	switch u.Scheme {
	case "http", "https":
		return f.fetchHTTP(ctx, u, etag, lastModified, maxBytes)
	case "file":
		return f.fetchFile(u, etag, lastModified, maxBytes)
	default:
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: unsupported scheme %q", RedactURL(rawURL), u.Scheme)
	}
}

// RedactURL is a feed URL as it may be shown or logged: the user info and
// every query value (providers put licence keys there) replaced by "xxxxx",
// the parameter names kept. A URL that does not parse is not shown at all.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return redact(u)
}

func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword("xxxxx", "xxxxx")
		} else {
			c.User = url.User("xxxxx")
		}
	}
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		if err != nil {
			c.RawQuery = "xxxxx"
		} else {
			for k, vs := range q {
				for i := range vs {
					vs[i] = "xxxxx"
				}
				q[k] = vs
			}
			c.RawQuery = q.Encode()
		}
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// describe turns an HTTP client error into words of the fetcher's own: net/http
// quotes what the peer sent (`malformed HTTP response "SSH-2.0-…"`), which
// must not reach run errors and the people who read them.
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var fb *forbidden
	switch {
	case errors.As(err, &fb):
		return fb.Error()
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "timed out"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "the host name does not resolve"
		}
		return "the host name could not be resolved"
	case errors.As(err, &certErr):
		return "the server's TLS certificate is not valid for it"
	case errors.As(err, &recErr):
		return "the server does not speak TLS"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return "could not connect: " + errno.Error()
		}
		return "could not connect"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the connection closed before a complete answer"
	}
	return "the server's answer is not valid HTTP"
}

func (f *Fetcher) fetchHTTP(ctx context.Context, u *url.URL, etag, lastModified string, maxBytes int64) (io.ReadCloser, string, string, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: the request could not be made", redact(u))
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if lastModified != "" {
		req.Header.Set("If-Modified-Since", lastModified)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		wrapped := ctx.Err()
		if errors.Is(err, ErrForbiddenDestination) {
			wrapped = ErrForbiddenDestination
		}
		if wrapped != nil {
			return nil, "", "", false, fmt.Errorf("feed: fetch %s: %s: %w", redact(u), describe(err), wrapped)
		}
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %s", redact(u), describe(err))
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		resp.Body.Close()
		// Some servers omit the validators on 304: keep the old ones.
		return nil, firstNonEmpty(resp.Header.Get("ETag"), etag), firstNonEmpty(resp.Header.Get("Last-Modified"), lastModified), true, nil
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		// The status code, not the peer's reason phrase.
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: unexpected status %d %s", redact(u), resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if maxBytes > 0 && resp.ContentLength > maxBytes {
		resp.Body.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: content length %d over %d bytes: %w", redact(u), resp.ContentLength, maxBytes, ErrTooLarge)
	}
	return limitBody(resp.Body, maxBytes), resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), false, nil
}

// ErrOutsideFileDir is returned (wrapped) for a file:// URL outside the
// policy's directory.
var ErrOutsideFileDir = errors.New("file feeds must be under the feed directory")

func (f *Fetcher) fetchFile(u *url.URL, etag, lastModified string, maxBytes int64) (io.ReadCloser, string, string, bool, error) {
	shown := redact(u)
	if u.Host != "" && u.Host != "localhost" {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: remote file host %q not supported", shown, u.Host)
	}
	if u.Path == "" {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: file URL needs an absolute path (file:///...)", shown)
	}
	if f.fileDir == "" {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: no feed directory is configured (MUNINN_FEED_FILE_DIR): %w", shown, ErrOutsideFileDir)
	}
	// Both sides resolved: a symlink inside the directory must not lead out.
	// A relative directory (make run's ./data/feeds) is taken from the
	// working directory, so it compares with the URL's absolute path.
	dir, err := filepath.Abs(f.fileDir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: the feed directory: %w", shown, ErrOutsideFileDir)
	}
	path, err := filepath.EvalSymlinks(filepath.Clean(u.Path))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", shown, os.ErrNotExist)
		}
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: cannot open", shown)
	}
	if rel, err := filepath.Rel(dir, path); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w (%s)", shown, ErrOutsideFileDir, f.fileDir)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", shown, err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: %w", shown, err)
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: not a regular file", shown)
	}
	// A file's validators mirror what a web server would send: size and
	// modification time make the ETag, the time alone Last-Modified.
	newETag := `"` + strconv.FormatInt(st.Size(), 16) + "-" + strconv.FormatInt(st.ModTime().UnixNano(), 16) + `"`
	newLM := st.ModTime().UTC().Format(http.TimeFormat)
	if (etag != "" && etag == newETag) || (etag == "" && lastModified != "" && notModifiedSince(st.ModTime(), lastModified)) {
		fh.Close()
		return nil, newETag, newLM, true, nil
	}
	if maxBytes > 0 && st.Size() > maxBytes {
		fh.Close()
		return nil, "", "", false, fmt.Errorf("feed: fetch %s: file size %d over %d bytes: %w", shown, st.Size(), maxBytes, ErrTooLarge)
	}
	return limitBody(fh, maxBytes), newETag, newLM, false, nil
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
