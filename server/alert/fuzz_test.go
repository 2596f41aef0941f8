package alert_test

import (
	"net/url"
	"testing"

	"github.com/muninn/muninn/server/alert"
)

// FuzzRedact: Redact never panics, is idempotent, and leaves no user
// information but REDACTED in a URL that parses.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"ntfy://:tk@ntfy.sh/t", "gotify://h/AToken?disabletls=yes", "smtp://u:p@h:25/?to=a@b",
		"generic://h/p?@Authorization=Bearer+x&$k=v", "telegram://1:2@telegram?chats=@c", "%", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := alert.Redact(raw)
		if again := alert.Redact(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, out, again)
		}
		u, err := url.Parse(out)
		if err != nil || u.User == nil {
			return
		}
		if u.User.Username() != alert.Redacted {
			t.Fatalf("user left in %q (from %q)", out, raw)
		}
		if p, ok := u.User.Password(); ok && p != alert.Redacted {
			t.Fatalf("password left in %q (from %q)", out, raw)
		}
	})
}
