package alert

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
)

// Redacted replaces every secret of a URL.
const Redacted = "REDACTED"

// pathSecrets are the services whose URL path carries a token
// (gotify://host/TOKEN, slack://tokenA/tokenB/tokenC, ...).
var pathSecrets = map[string]bool{"gotify": true, "slack": true, "teams": true, "pushover": true,
	"pushbullet": true, "bark": true, "join": true, "ifttt": true, "zulip": true, "mattermost": true,
	"rocketchat": true, "googlechat": true, "lark": true, "wecom": true, "opsgenie": true, "pagerduty": true,
	"discord": true, "telegram": true, "matrix": true, "signal": true, "notifiarr": true}

// secretKey says whether a query key names a secret: a header (@Name),
// extra data ($name) or a key whose name speaks of one.
func secretKey(k string) bool {
	l := strings.ToLower(k)
	if strings.HasPrefix(l, "@") || strings.HasPrefix(l, "$") {
		return true
	}
	for _, w := range []string{"token", "key", "pass", "secret", "auth", "sig", "webhook"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// Redact returns raw with its secrets replaced by REDACTED: the user
// information, the path of services that keep tokens there, and query
// values of headers and of keys naming tokens, keys, passwords or secrets.
// A URL that does not parse is REDACTED whole.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return Redacted
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(Redacted, Redacted)
		} else {
			u.User = url.User(Redacted)
		}
	}
	service := strings.SplitN(u.Scheme, "+", 2)[0]
	if pathSecrets[service] && strings.Trim(u.Path, "/") != "" {
		u.Path, u.RawPath = "/"+Redacted, ""
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretKey(k) {
				q[k] = []string{Redacted}
			}
		}
		u.RawQuery = q.Encode()
	}
	if u.Opaque != "" {
		u.Opaque = Redacted
	}
	return u.String()
}

// Service returns the shoutrrr service of a channel URL ("ntfy",
// "smtp", "generic", ...) after checking that shoutrrr accepts the URL;
// the error says why not without repeating the URL.
func Service(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "", errors.New("must be a notification URL such as ntfy://ntfy.sh/topic or smtp://user:pass@host:587/?from=a@b&to=c@d")
	}
	r := &router.ServiceRouter{}
	if _, err := r.Locate(raw); err != nil {
		// shoutrrr's errors quote the URL: say which part failed only.
		msg := err.Error()
		switch {
		case errors.Is(err, router.ErrUnknownService):
			msg = fmt.Sprintf("unknown service %q", u.Scheme)
		default:
			msg = fmt.Sprintf("the %s service refused the URL (check its parameters)", u.Scheme)
		}
		return "", errors.New(msg)
	}
	return strings.SplitN(strings.ToLower(u.Scheme), "+", 2)[0], nil
}

// DefaultSendTimeout is how long one delivery attempt may take unless
// configured otherwise (the worker's AlertDeps.SendTimeout, the API's test
// message).
const DefaultSendTimeout = 10 * time.Second

// BoundDefaultClient bounds every request made through http.DefaultClient
// to d (when it has no bound yet). Several shoutrrr services, the generic
// webhook among them (shoutrrr v0.13.2 generic.go), send with
// http.DefaultClient and a background context: Send stops waiting after its
// timeout, but without this bound the abandoned request (and its goroutine
// and connection) would wait for a hanging receiver forever. It changes
// process-wide state: call it once at start, before any request is made
// (muninn serve and worker do, with DefaultSendTimeout).
func BoundDefaultClient(d time.Duration) {
	if http.DefaultClient.Timeout == 0 || http.DefaultClient.Timeout > d {
		http.DefaultClient.Timeout = d
	}
}

// Send delivers m to the channel URL raw through shoutrrr, giving up after
// timeout (a retry is then the caller's: the worker's delivery job retries
// with backoff). The request itself ends at http.DefaultClient's bound for
// services that use it (BoundDefaultClient). The error never contains the
// URL.
func Send(raw string, m Message, timeout time.Duration) error {
	r, err := router.New(nil, raw)
	if err != nil {
		return errors.New("alert: the channel URL is not valid any more")
	}
	r.Timeout = timeout
	params := types.Params{"title": m.Title}
	errs := r.Send(m.Body, &params)
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("alert: send: %s", scrub(err.Error(), raw))
		}
	}
	return nil
}

// scrub removes the URL and its secrets from an error text.
func scrub(msg, raw string) string {
	msg = strings.ReplaceAll(msg, raw, Redact(raw))
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				msg = strings.ReplaceAll(msg, p, Redacted)
			}
			if n := u.User.Username(); len(n) > 3 {
				msg = strings.ReplaceAll(msg, n, Redacted)
			}
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				if len(v) > 6 {
					msg = strings.ReplaceAll(msg, v, Redacted)
				}
			}
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if len(seg) > 6 {
				msg = strings.ReplaceAll(msg, seg, Redacted)
			}
		}
	}
	return msg
}

// Sealer seals channel URLs with AES-256-GCM under one key, so the database
// (and its backups) never hold them in clear.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("alert: the key must be 32 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("alert: key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("alert: key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// ParseKey decodes a key written as 64 hexadecimal digits.
func ParseKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != 32 {
		return nil, errors.New("alert: the key must be 64 hexadecimal digits (32 bytes)")
	}
	return k, nil
}

// LoadKeyFile reads the key in path (64 hex digits), creating it with a
// random key (mode 0600) when it does not exist. Every process sharing a
// database must use the same key (MUNINN_ALERT_KEY or the same file).
func LoadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("alert: new key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("alert: new key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadKeyFile(path) // another process wrote it first
		}
		if err != nil {
			return nil, fmt.Errorf("alert: new key: %w", err)
		}
		if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
			f.Close()
			return nil, fmt.Errorf("alert: new key: %w", err)
		}
		return k, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("alert: key: %w", err)
	}
	return ParseKey(string(b))
}

// Seal encrypts a URL.
func (s *Sealer) Seal(raw string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("alert: seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, []byte(raw), nil), nil
}

// Open decrypts a sealed URL; it fails when the key differs.
func (s *Sealer) Open(sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("alert: sealed URL too short")
	}
	b, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", errors.New("alert: the channel URL was sealed with another key (MUNINN_ALERT_KEY)")
	}
	return string(b), nil
}
