package sensor_test

import (
	"testing"

	"github.com/muninn/muninn/server/sensor"
)

// FuzzParse feeds every format arbitrary lines: a parser may reject a line
// but never panics, and every event it returns has a valid address and kind.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"Mar  3 10:00:01 gw sshd[812]: Failed password for invalid user admin from 203.0.113.9 port 50122 ssh2",
		"2026-01-12T11:15:58.792703+00:00 host sshd[1]: Invalid user a from 2001:db8::7 port 1",
		`{"__REALTIME_TIMESTAMP":"1772532001123456","_HOSTNAME":"gw","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"Failed password for root from 203.0.113.9 port 1 ssh2"}`,
		`{"eventid":"cowrie.session.connect","src_ip":"203.0.113.50","sensor":"pot1","timestamp":"2026-03-03T10:00:04.123456Z"}`,
		`203.0.113.7 - - [03/Mar/2026:11:00:03 +0100] "GET /.env HTTP/1.1" 404 153 "-" "x"`,
		`{"ClientHost":"203.0.113.8","DownstreamStatus":404,"RequestPath":"/x","StartUTC":"2026-03-03T10:00:03Z"}`,
		`{"ts":1772532003.5,"request":{"client_ip":"203.0.113.9","uri":"/x"},"status":404}`,
		"2026-03-03 10:00:05,123 fail2ban.actions        [812]: NOTICE  [sshd] Ban 203.0.113.9",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 reply edge.example.org is 2001:db8::20",
		`{"ts":1772532003.5,"id.orig_h":"192.168.1.10","query":"a.example","answers":["198.51.100.20"]}`,
		"#fields\tts\tid.orig_h\tquery\tanswers",
	}
	for _, s := range seeds {
		for i := range sensor.Formats {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, fi uint8, line string) {
		format := sensor.Formats[int(fi)%len(sensor.Formats)]
		p, err := sensor.NewParser(format, sensor.Options{Pattern: `from (?P<ip>\S+)`})
		if err != nil {
			t.Fatal(err)
		}
		// Twice: stateful formats (Zeek TSV headers, dnsmasq serials)
		// read a header line and then a row.
		for range 2 {
			evs, _ := p.Parse(line)
			for _, ev := range evs {
				if !ev.Addr.IsValid() || ev.Kind == "" || ev.Addr.Zone() != "" {
					t.Fatalf("%s %q: bad event %+v", format, line, ev)
				}
			}
		}
	})
}
