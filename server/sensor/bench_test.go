package sensor_test

import (
	"testing"
	"time"

	"github.com/muninn/muninn/server/sensor"
)

// BenchmarkParse reports the time one line of each common format takes to
// parse (issue 15's endpoint target is 50k lines/s on 2 cores, so parsing
// must stay a small part of 20 µs a line).
func BenchmarkParse(b *testing.B) {
	now := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ format, line string }{
		{"sshd", "2026-03-03T10:00:02.123456+00:00 gw sshd[812]: Failed password for invalid user admin from 198.51.100.20 port 4242 ssh2"},
		{"sshd", "Mar  3 10:00:02 gw sshd[812]: Connection closed by authenticating user root 198.51.100.20 port 4242 [preauth]"},
		{"nginx", `198.51.100.20 - - [03/Mar/2026:10:00:02 +0000] "GET /wp-login.php HTTP/1.1" 404 153 "-" "Mozilla/5.0"`},
		{"cowrie", `{"eventid":"cowrie.login.failed","username":"root","password":"123456","message":"login attempt [root/123456] failed","sensor":"hp1","timestamp":"2026-03-03T10:00:02.123456Z","src_ip":"198.51.100.20","session":"a1b2c3d4"}`},
	} {
		b.Run(c.format, func(b *testing.B) {
			p, err := sensor.NewParser(c.format, sensor.Options{Now: now})
			if err != nil {
				b.Fatal(err)
			}
			evs, err := p.Parse(c.line)
			if err != nil || len(evs) != 1 {
				b.Fatalf("%q: %v %v", c.line, evs, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = p.Parse(c.line)
			}
		})
	}
}
