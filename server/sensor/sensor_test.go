package sensor_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/sensor"
)

var now = time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

type parseCase struct {
	name, format, line string
	want               []sensor.Event
	wantErr            bool
}

func runCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := sensor.NewParser(c.format, sensor.Options{Now: now})
			require.NoError(t, err)
			got, err := p.Parse(c.line)
			if c.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

func TestParseSSHD(t *testing.T) {
	t.Parallel()
	bsd := "Mar  3 10:00:01 gw sshd[812]: "
	at := ts("2026-03-03T10:00:01Z")
	runCases(t, []parseCase{
		{"bsd failed invalid", "sshd", bsd + "Failed password for invalid user admin from 203.0.113.9 port 50122 ssh2",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindSSHAuthFailure, At: at, Host: "gw", User: "admin",
				Detail: "Failed password for invalid user admin from 203.0.113.9 port 50122 ssh2"}}, false},
		{"bsd failed root", "sshd", bsd + "Failed password for root from 198.51.100.4 port 2201 ssh2",
			[]sensor.Event{{Addr: ip("198.51.100.4"), Kind: sensor.KindSSHAuthFailure, At: at, Host: "gw", User: "root",
				Detail: "Failed password for root from 198.51.100.4 port 2201 ssh2"}}, false},
		{"rfc3339 ubuntu 24.04", "sshd", "2026-01-12T11:15:58.792703+00:00 host sshd[1581943]: Invalid user oracle from 2001:db8::7 port 41234",
			[]sensor.Event{{Addr: ip("2001:db8::7"), Kind: sensor.KindSSHInvalidUser, At: ts("2026-01-12T11:15:58.792703Z"), Host: "host", User: "oracle",
				Detail: "Invalid user oracle from 2001:db8::7 port 41234"}}, false},
		{"user name injecting an address", "sshd", bsd + "Failed password for invalid user x from 192.0.2.1 from 203.0.113.9 port 22 ssh2",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindSSHAuthFailure, At: at, Host: "gw", User: "x from 192.0.2.1",
				Detail: "Failed password for invalid user x from 192.0.2.1 from 203.0.113.9 port 22 ssh2"}}, false},
		{"sshd-session", "sshd", "Mar  3 10:00:01 gw sshd-session[9]: Connection closed by authenticating user root 203.0.113.9 port 1 [preauth]",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindSSHPreauth, At: at, Host: "gw", User: "root",
				Detail: "Connection closed by authenticating user root 203.0.113.9 port 1 [preauth]"}}, false},
		{"max auth", "sshd", bsd + "error: maximum authentication attempts exceeded for root from 203.0.113.9 port 1 ssh2 [preauth]",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindSSHMaxAuth, At: at, Host: "gw", User: "root",
				Detail: "error: maximum authentication attempts exceeded for root from 203.0.113.9 port 1 ssh2 [preauth]"}}, false},
		{"not allowed", "sshd", bsd + "User bob from 203.0.113.9 not allowed because not listed in AllowUsers",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindSSHRefused, At: at, Host: "gw", User: "bob",
				Detail: "User bob from 203.0.113.9 not allowed because not listed in AllowUsers"}}, false},
		{"accepted", "sshd", bsd + "Accepted publickey for alice from 192.0.2.5 port 5000 ssh2: ED25519 SHA256:abc",
			[]sensor.Event{{Addr: ip("192.0.2.5"), Kind: sensor.KindSSHLogin, At: at, Host: "gw", User: "alice",
				Detail: "Accepted publickey for alice from 192.0.2.5 port 5000 ssh2: ED25519 SHA256:abc"}}, false},
		{"failed publickey of a real user", "sshd", bsd + "Failed publickey for alice from 192.0.2.5 port 5000 ssh2", nil, false},
		{"other daemon", "sshd", "Mar  3 10:00:01 gw CRON[5]: pam_unix(cron:session): session opened", nil, false},
		{"host name, not an address", "sshd", bsd + "Failed password for root from evil.example port 1 ssh2", nil, false},
		{"journald", "sshd", `{"__REALTIME_TIMESTAMP":"1772532001123456","_HOSTNAME":"gw","SYSLOG_IDENTIFIER":"sshd-session","_COMM":"sshd-session","MESSAGE":"Failed password for root from 203.0.113.9 port 50122 ssh2"}`,
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindSSHAuthFailure, At: time.UnixMicro(1772532001123456).UTC(), Host: "gw", User: "root",
				Detail: "Failed password for root from 203.0.113.9 port 50122 ssh2"}}, false},
		{"bare message (sshd -E)", "sshd", "Failed password for root from 127.0.0.1 port 53264 ssh2",
			[]sensor.Event{{Addr: ip("127.0.0.1"), Kind: sensor.KindSSHAuthFailure, User: "root", Detail: "Failed password for root from 127.0.0.1 port 53264 ssh2"}}, false},
		{"not an sshd message", "sshd", "hello world", nil, false},
		{"bad journald", "sshd", `{"MESSAGE":"x"}`, nil, true},
	})
}

func TestBSDYearRollsBack(t *testing.T) {
	t.Parallel()
	p, err := sensor.NewParser("sshd", sensor.Options{Now: time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)})
	require.NoError(t, err)
	got, err := p.Parse("Dec 31 23:59:59 gw sshd[1]: Invalid user a from 203.0.113.9 port 1")
	require.NoError(t, err)
	require.Equal(t, ts("2025-12-31T23:59:59Z"), got[0].At)
}

func TestParseCowrie(t *testing.T) {
	t.Parallel()
	runCases(t, []parseCase{
		{"connect Z", "cowrie", `{"eventid":"cowrie.session.connect","src_ip":"203.0.113.50","src_port":50412,"dst_ip":"192.0.2.2","dst_port":2222,"session":"a1b2c3d4e5f6","protocol":"ssh","message":"New connection: 203.0.113.50:50412 (192.0.2.2:2222) [session: a1b2c3d4e5f6]","sensor":"pot1","uuid":"x","timestamp":"2026-03-03T10:00:04.123456Z"}`,
			[]sensor.Event{{Addr: ip("203.0.113.50"), Kind: sensor.KindHoneypotConnect, At: ts("2026-03-03T10:00:04.123456Z"), Host: "pot1", Detail: "cowrie.session.connect"}}, false},
		{"login failed +0000", "cowrie", `{"eventid":"cowrie.login.failed","username":"root","password":"123456","message":"login attempt [root/123456] failed","sensor":"pot1","timestamp":"2026-03-03T10:00:05.000001+0000","src_ip":"203.0.113.50","session":"a1b2c3d4e5f6"}`,
			[]sensor.Event{{Addr: ip("203.0.113.50"), Kind: sensor.KindHoneypotLogin, At: ts("2026-03-03T10:00:05.000001Z"), Host: "pot1", User: "root", Detail: "cowrie.login.failed"}}, false},
		{"command", "cowrie", `{"eventid":"cowrie.command.input","input":"uname -a","sensor":"pot1","timestamp":"2026-03-03T10:00:06.5Z","src_ip":"203.0.113.50","session":"a"}`,
			[]sensor.Event{{Addr: ip("203.0.113.50"), Kind: sensor.KindHoneypotCommand, At: ts("2026-03-03T10:00:06.5Z"), Host: "pot1", Detail: "cowrie.command.input uname -a"}}, false},
		{"other", "cowrie", `{"eventid":"cowrie.client.version","version":"SSH-2.0-Go","sensor":"pot1","timestamp":"2026-03-03T10:00:06Z","src_ip":"203.0.113.50","session":"a"}`,
			[]sensor.Event{{Addr: ip("203.0.113.50"), Kind: sensor.KindHoneypotOther, At: ts("2026-03-03T10:00:06Z"), Host: "pot1", Detail: "cowrie.client.version"}}, false},
		{"not cowrie", "cowrie", `{"eventid":"x"}`, nil, true},
		{"bad ip", "cowrie", `{"eventid":"cowrie.session.connect","src_ip":"nope","timestamp":"2026-03-03T10:00:06Z"}`, nil, true},
	})
}

func TestParseWeb(t *testing.T) {
	t.Parallel()
	at := ts("2026-03-03T10:00:03Z")
	runCases(t, []parseCase{
		{"nginx combined 404", "nginx", `203.0.113.7 - - [03/Mar/2026:11:00:03 +0100] "GET /nothing HTTP/1.1" 404 153 "-" "Mozilla/5.0"`,
			[]sensor.Event{{Addr: ip("203.0.113.7"), Kind: "http-404", At: at, Detail: "GET /nothing"}}, false},
		{"nginx combined exploit 200", "nginx", `203.0.113.7 - - [03/Mar/2026:10:00:03 +0000] "GET /.env HTTP/1.1" 200 12 "-" "curl/8"`,
			[]sensor.Event{{Addr: ip("203.0.113.7"), Kind: sensor.KindHTTPExploitPath, At: at, Detail: "GET /.env"}}, false},
		{"nginx combined 200", "nginx", `192.0.2.1 - bob [03/Mar/2026:10:00:03 +0000] "GET / HTTP/1.1" 200 612 "-" "x"`, nil, false},
		{"nginx json", "nginx", `{"time_iso8601":"2026-03-03T10:00:03+00:00","remote_addr":"2001:db8::9","request":"POST /wp-login.php HTTP/1.1","status":"403","host":"www.example.org"}`,
			[]sensor.Event{{Addr: ip("2001:db8::9"), Kind: sensor.KindHTTPExploitPath, At: at, Host: "www.example.org", Detail: "POST /wp-login.php"}}, false},
		{"nginx json numeric status", "nginx", `{"msec":"1772532003.000","remote_addr":"203.0.113.7","request_method":"GET","request_uri":"/a?b","status":401}`,
			[]sensor.Event{{Addr: ip("203.0.113.7"), Kind: "http-401", At: at, Detail: "GET /a?b"}}, false},
		{"nginx garbage", "nginx", `hello`, nil, true},
		{"traefik clf", "traefik", `203.0.113.8 - - [03/Mar/2026:10:00:03 +0000] "GET /admin HTTP/1.1" 401 17 "-" "curl/8.5.0" 42 "web@docker" "http://10.0.0.5:80" 3ms`,
			[]sensor.Event{{Addr: ip("203.0.113.8"), Kind: "http-401", At: at, Detail: "GET /admin"}}, false},
		{"traefik json", "traefik", `{"ClientAddr":"203.0.113.8:5555","ClientHost":"203.0.113.8","ClientPort":"5555","DownstreamStatus":404,"RequestHost":"app.example.org","RequestMethod":"GET","RequestPath":"/x","StartUTC":"2026-03-03T10:00:03.123456789Z","Duration":12345}`,
			[]sensor.Event{{Addr: ip("203.0.113.8"), Kind: "http-404", At: ts("2026-03-03T10:00:03.123456789Z"), Host: "app.example.org", Detail: "GET /x"}}, false},
		{"caddy", "caddy", `{"level":"info","ts":1772532003.5,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"10.0.0.1","remote_port":"41342","client_ip":"203.0.113.9","proto":"HTTP/1.1","method":"GET","host":"example.org","uri":"/cgi-bin/luci"},"status":404}`,
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindHTTPExploitPath, At: ts("2026-03-03T10:00:03.5Z"), Host: "example.org", Detail: "GET /cgi-bin/luci"}}, false},
		{"caddy not access", "caddy", `{"level":"info","ts":1772532003.5,"msg":"serving"}`, nil, false},
	})
}

func TestParseFail2ban(t *testing.T) {
	t.Parallel()
	runCases(t, []parseCase{
		{"ban", "fail2ban", "2026-03-03 10:00:05,123 fail2ban.actions        [812]: NOTICE  [sshd] Ban 203.0.113.9",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindFail2banBan, At: ts("2026-03-03T10:00:05.123Z"), Detail: "sshd"}}, false},
		{"unban", "fail2ban", "2026-03-03 10:10:05,000 fail2ban.actions        [812]: NOTICE  [nginx-http-auth] Unban 2001:db8::1",
			[]sensor.Event{{Addr: ip("2001:db8::1"), Kind: sensor.KindFail2banUnban, At: ts("2026-03-03T10:10:05Z"), Detail: "nginx-http-auth"}}, false},
		{"restore ban", "fail2ban", "2026-03-03 10:00:05,123 fail2ban.actions        [812]: NOTICE  [sshd] Restore Ban 203.0.113.9",
			[]sensor.Event{{Addr: ip("203.0.113.9"), Kind: sensor.KindFail2banBan, At: ts("2026-03-03T10:00:05.123Z"), Detail: "sshd"}}, false},
		{"found", "fail2ban", "2026-03-03 10:00:05,123 fail2ban.filter         [812]: INFO    [sshd] Found 203.0.113.9 - 2026-03-03 10:00:05", nil, false},
		{"garbage", "fail2ban", "Ban 1.2.3.4", nil, true},
	})
}

func TestParseDnsmasq(t *testing.T) {
	t.Parallel()
	at := ts("2026-03-03T10:00:02Z")
	p, err := sensor.NewParser("dnsmasq", sensor.Options{Now: now})
	require.NoError(t, err)
	lines := []string{
		"Mar  3 10:00:02 gw dnsmasq[501]: query[A] updates.example.net from 192.168.1.10",
		"Mar  3 10:00:02 gw dnsmasq[501]: forwarded updates.example.net to 192.0.2.53",
		"Mar  3 10:00:02 gw dnsmasq[501]: reply updates.example.net is 198.51.100.20",
		"Mar  3 10:00:02 gw dnsmasq[501]: reply nothing.example.net is NXDOMAIN",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 query[AAAA] cdn.example.com from 192.168.1.11",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 reply cdn.example.com is <CNAME>",
		"Mar  3 10:00:02 dnsmasq[501]: 7 192.168.1.11/53211 reply edge.example.org is 2001:db8::20",
		"Mar  3 10:00:02 gw dnsmasq[501]: reply 198.51.100.21 is mail.example.net",
		"Mar  3 10:00:02 gw dnsmasq[501]: /etc/hosts nas.lan is 192.168.1.2",
	}
	var got []sensor.Event
	for _, l := range lines {
		evs, err := p.Parse(l)
		require.NoError(t, err, l)
		got = append(got, evs...)
	}
	require.Equal(t, []sensor.Event{
		{Addr: ip("198.51.100.20"), Kind: sensor.KindDNSAnswer, At: at, Host: "gw", Detail: "reply", DNS: &sensor.DNSAnswer{Name: "updates.example.net", Client: ip("192.168.1.10")}},
		{Addr: ip("2001:db8::20"), Kind: sensor.KindDNSAnswer, At: at, Detail: "reply", DNS: &sensor.DNSAnswer{Name: "edge.example.org", Client: ip("192.168.1.11")}},
		{Addr: ip("2001:db8::20"), Kind: sensor.KindDNSAnswer, At: at, Detail: "reply", DNS: &sensor.DNSAnswer{Name: "cdn.example.com", Client: ip("192.168.1.11")}},
		{Addr: ip("198.51.100.21"), Kind: sensor.KindDNSAnswer, At: at, Host: "gw", Detail: "reply", DNS: &sensor.DNSAnswer{Name: "mail.example.net"}},
		{Addr: ip("192.168.1.2"), Kind: sensor.KindDNSAnswer, At: at, Host: "gw", Detail: "/etc/hosts", DNS: &sensor.DNSAnswer{Name: "nas.lan"}},
	}, got)
	_, err = p.Parse("nonsense")
	require.Error(t, err)
}

func TestParseZeek(t *testing.T) {
	t.Parallel()
	at := ts("2026-03-03T10:00:03.5Z")
	runCases(t, []parseCase{
		{"dns json", "zeek-dns", `{"ts":1772532003.5,"uid":"C1","id.orig_h":"192.168.1.10","id.orig_p":5353,"id.resp_h":"192.168.1.1","id.resp_p":53,"proto":"udp","query":"updates.example.net","qtype_name":"A","rcode_name":"NOERROR","answers":["alias.example.net","198.51.100.20"],"TTLs":[60.0,300.0]}`,
			[]sensor.Event{{Addr: ip("198.51.100.20"), Kind: sensor.KindDNSAnswer, At: at, Detail: "A", DNS: &sensor.DNSAnswer{Name: "updates.example.net", Client: ip("192.168.1.10")}}}, false},
		{"conn json S0", "zeek-conn", `{"ts":1772532003.5,"uid":"C2","id.orig_h":"203.0.113.66","id.orig_p":40000,"id.resp_h":"192.0.2.2","id.resp_p":23,"proto":"tcp","conn_state":"S0","history":"S"}`,
			[]sensor.Event{{Addr: ip("203.0.113.66"), Kind: sensor.KindConnRejected, At: at, Detail: "tcp 192.0.2.2:23 S0"}}, false},
		{"conn json SF", "zeek-conn", `{"ts":1772532003.5,"id.orig_h":"203.0.113.66","id.resp_h":"192.0.2.2","id.resp_p":443,"proto":"tcp","service":"ssl","conn_state":"SF"}`,
			[]sensor.Event{{Addr: ip("203.0.113.66"), Kind: sensor.KindConn, At: at, Detail: "tcp 192.0.2.2:443 SF"}}, false},
		{"tsv row before header", "zeek-conn", "1772532003.5\tC\t203.0.113.66", nil, true},
	})
}

func TestParseZeekTSV(t *testing.T) {
	t.Parallel()
	p, err := sensor.NewParser("zeek-dns", sensor.Options{})
	require.NoError(t, err)
	lines := []string{
		`#separator \x09`,
		"#set_separator\t,",
		"#empty_field\t(empty)",
		"#unset_field\t-",
		"#path\tdns",
		"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tquery\tqtype_name\trcode_name\tanswers\tTTLs",
		"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tstring\tstring\tvector[string]\tvector[interval]",
		"1772532003.500000\tC1\t192.168.1.10\t5353\t192.168.1.1\t53\tudp\tupdates.example.net\tA\tNOERROR\t198.51.100.20,198.51.100.21\t300.000000,300.000000",
		"1772532003.500000\tC2\t192.168.1.10\t5353\t192.168.1.1\t53\tudp\tnx.example.net\tA\tNXDOMAIN\t-\t-",
		"#close\t2026-03-03-10-05-00",
	}
	var got []sensor.Event
	for _, l := range lines {
		evs, err := p.Parse(l)
		require.NoError(t, err, l)
		got = append(got, evs...)
	}
	at := ts("2026-03-03T10:00:03.5Z")
	d := &sensor.DNSAnswer{Name: "updates.example.net", Client: ip("192.168.1.10")}
	require.Equal(t, []sensor.Event{
		{Addr: ip("198.51.100.20"), Kind: sensor.KindDNSAnswer, At: at, Detail: "A", DNS: d},
		{Addr: ip("198.51.100.21"), Kind: sensor.KindDNSAnswer, At: at, Detail: "A", DNS: d},
	}, got)

	c, err := sensor.NewParser("zeek-conn", sensor.Options{})
	require.NoError(t, err)
	for _, l := range []string{`#separator \x09`, "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tconn_state"} {
		_, err := c.Parse(l)
		require.NoError(t, err)
	}
	evs, err := c.Parse("1772532003.5\tC3\t203.0.113.66\t40000\t192.0.2.2\t22\ttcp\t-\tREJ")
	require.NoError(t, err)
	require.Equal(t, []sensor.Event{{Addr: ip("203.0.113.66"), Kind: sensor.KindConnRejected, At: at, Detail: "tcp 192.0.2.2:22 REJ"}}, evs)
}

func TestParseRegex(t *testing.T) {
	t.Parallel()
	p, err := sensor.NewParser("regex", sensor.Options{Pattern: `^(?P<host>\S+) myapp: bad token from (?P<ip>\S+) user=(?P<user>\w+)`, Kind: "app-bad-token"})
	require.NoError(t, err)
	evs, err := p.Parse("web1 myapp: bad token from 203.0.113.4 user=eve")
	require.NoError(t, err)
	require.Equal(t, []sensor.Event{{Addr: ip("203.0.113.4"), Kind: "app-bad-token", Host: "web1", User: "eve"}}, evs)
	evs, err = p.Parse("web1 myapp: all good")
	require.NoError(t, err)
	require.Empty(t, evs)
	_, err = p.Parse("web1 myapp: bad token from nope user=eve")
	require.Error(t, err)

	_, err = sensor.NewParser("regex", sensor.Options{Pattern: `from (\S+)`})
	require.ErrorContains(t, err, "(?P<ip>")
	_, err = sensor.NewParser("syslog", sensor.Options{})
	require.ErrorIs(t, err, sensor.ErrUnknownFormat)
}

func TestPrivate(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{"10.1.2.3": true, "127.0.0.1": true, "::1": true, "fe80::1": true, "100.64.1.1": true,
		"fd00::1": true, "203.0.113.9": false, "2001:db8::1": false} {
		require.Equal(t, want, sensor.Private(ip(s)), s)
	}
}
