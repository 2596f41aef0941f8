package sensor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// exploitPrefixes and exploitParts name paths that scanners ask for and an
// ordinary visitor does not: a request for one is an event whatever its
// status. Matched against the lower-cased path without its query.
var (
	exploitPrefixes = []string{
		"/.env", "/.git/", "/.aws/", "/.ds_store", "/.svn/", "/.htpasswd", "/wp-login.php", "/xmlrpc.php",
		"/wp-admin", "/wp-content/plugins/", "/phpmyadmin", "/pma/", "/myadmin", "/cgi-bin/", "/vendor/phpunit",
		"/boaform", "/hnap1", "/actuator", "/solr/admin", "/manager/html", "/owa/auth", "/gponform", "/setup.cgi",
		"/shell", "/console/", "/druid/", "/jenkins/script", "/server-status", "/config.json", "/.well-known/../",
	}
	exploitParts = []string{"../", "..%2f", "etc/passwd", "eval-stdin.php", "phpunit", "${jndi:", "/bin/sh", "cmd.exe"}
)

// ExploitPath says whether path (a request target, with or without its
// query) is a well-known exploit path.
func ExploitPath(path string) bool {
	p := strings.ToLower(path)
	for _, part := range exploitParts {
		if strings.Contains(p, part) {
			return true
		}
	}
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	for _, pre := range exploitPrefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// webEvent is the event of one web request, or nil for a request that is
// neither a 4xx nor an exploit path.
func webEvent(ip string, at time.Time, host, method, target string, status int) ([]Event, error) {
	a, err := parseIP(ip)
	if err != nil {
		return nil, err
	}
	kind := ""
	switch {
	case ExploitPath(target):
		kind = KindHTTPExploitPath
	case status >= 400 && status < 500:
		kind = HTTPKind(status)
	default:
		return nil, nil
	}
	detail := strings.TrimSpace(method + " " + target)
	return []Event{{Addr: a, Kind: kind, At: at, Host: host, Detail: detail}}, nil
}

// clf is the common/combined log format's start, shared by nginx and
// Traefik: `ip - user [time] "request" status size`, anything after.
var clf = regexp.MustCompile(`^(\S+) \S+ (?:\S+|"[^"]*") \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (?:\d+|-)`)

const clfTime = "02/Jan/2006:15:04:05 -0700"

func parseCLF(line string) (ip string, at time.Time, method, target string, status int, err error) {
	m := clf.FindStringSubmatch(line)
	if m == nil {
		return "", time.Time{}, "", "", 0, errors.New(`not a common log format line (want ip - user [dd/Mon/yyyy:hh:mm:ss +zzzz] "request" status size ...)`)
	}
	at, err = time.Parse(clfTime, m[2])
	if err != nil {
		return "", time.Time{}, "", "", 0, fmt.Errorf("time %q: want dd/Mon/yyyy:hh:mm:ss +zzzz", m[2])
	}
	status, _ = strconv.Atoi(m[4])
	req := strings.Fields(m[3])
	switch len(req) {
	case 0:
	case 1:
		target = req[0]
	default:
		method, target = req[0], req[1]
	}
	return m[1], at.UTC(), method, target, status, nil
}

// nginxJSON is a custom nginx `log_format … escape=json` object; the field
// names are nginx's variable names.
type nginxJSON struct {
	RemoteAddr string          `json:"remote_addr"`
	TimeISO    string          `json:"time_iso8601"`
	TimeLocal  string          `json:"time_local"`
	Msec       json.RawMessage `json:"msec"`
	Request    string          `json:"request"`
	RequestURI string          `json:"request_uri"`
	Method     string          `json:"request_method"`
	Status     json.RawMessage `json:"status"`
	Host       string          `json:"host"`
	HTTPHost   string          `json:"http_host"`
	ServerName string          `json:"server_name"`
}

func (p *Parser) parseNginx(line string) ([]Event, error) {
	if !strings.HasPrefix(line, "{") {
		ip, at, method, target, status, err := parseCLF(line)
		if err != nil {
			return nil, err
		}
		return webEvent(ip, at, "", method, target, status)
	}
	var j nginxJSON
	if err := json.Unmarshal([]byte(line), &j); err != nil {
		return nil, fmt.Errorf("nginx JSON: %w", err)
	}
	if j.RemoteAddr == "" {
		return nil, errors.New("nginx JSON: remote_addr is missing")
	}
	var at time.Time
	var err error
	switch {
	case j.TimeISO != "":
		at, err = time.Parse(time.RFC3339, j.TimeISO)
	case j.TimeLocal != "":
		at, err = time.Parse(clfTime, j.TimeLocal)
	case len(j.Msec) > 0:
		at, err = epoch(j.Msec)
	}
	if err != nil {
		return nil, fmt.Errorf("nginx JSON: time: %w", err)
	}
	status, err := jsonInt(j.Status)
	if err != nil {
		return nil, fmt.Errorf("nginx JSON: status: %w", err)
	}
	method, target := j.Method, j.RequestURI
	if target == "" && j.Request != "" {
		if f := strings.Fields(j.Request); len(f) >= 2 {
			method, target = f[0], f[1]
		}
	}
	host := j.Host
	if host == "" {
		host = j.HTTPHost
	}
	if host == "" {
		host = j.ServerName
	}
	return webEvent(j.RemoteAddr, at.UTC(), host, method, target, status)
}

// traefikJSON is Traefik's JSON access log (pkg/middlewares/accesslog/logdata.go).
type traefikJSON struct {
	ClientHost       string `json:"ClientHost"`
	StartUTC         string `json:"StartUTC"`
	DownstreamStatus int    `json:"DownstreamStatus"`
	RequestMethod    string `json:"RequestMethod"`
	RequestPath      string `json:"RequestPath"`
	RequestHost      string `json:"RequestHost"`
}

func (p *Parser) parseTraefik(line string) ([]Event, error) {
	if !strings.HasPrefix(line, "{") {
		ip, at, method, target, status, err := parseCLF(line)
		if err != nil {
			return nil, err
		}
		return webEvent(ip, at, "", method, target, status)
	}
	var j traefikJSON
	if err := json.Unmarshal([]byte(line), &j); err != nil {
		return nil, fmt.Errorf("traefik JSON: %w", err)
	}
	if j.ClientHost == "" {
		return nil, errors.New("traefik JSON: ClientHost is missing")
	}
	at, err := time.Parse(time.RFC3339Nano, j.StartUTC)
	if err != nil {
		return nil, errors.New("traefik JSON: StartUTC must be an RFC 3339 time")
	}
	return webEvent(j.ClientHost, at.UTC(), j.RequestHost, j.RequestMethod, j.RequestPath, j.DownstreamStatus)
}

// caddyJSON is Caddy's access log (logger http.log.access).
type caddyJSON struct {
	TS      json.RawMessage `json:"ts"`
	Request struct {
		RemoteIP string `json:"remote_ip"`
		ClientIP string `json:"client_ip"`
		Method   string `json:"method"`
		Host     string `json:"host"`
		URI      string `json:"uri"`
	} `json:"request"`
	Status int `json:"status"`
}

func parseCaddy(line string) ([]Event, error) {
	var j caddyJSON
	if err := json.Unmarshal([]byte(line), &j); err != nil {
		return nil, fmt.Errorf("caddy JSON: %w", err)
	}
	ip := j.Request.ClientIP
	if ip == "" {
		ip = j.Request.RemoteIP
	}
	if ip == "" {
		return nil, nil // not an access log entry
	}
	at, err := epoch(j.TS)
	if err != nil {
		return nil, fmt.Errorf("caddy JSON: ts: %w", err)
	}
	return webEvent(ip, at, j.Request.Host, j.Request.Method, j.Request.URI, j.Status)
}

// epoch reads seconds since the epoch as a JSON number or numeric string,
// or an RFC 3339 string.
func epoch(raw json.RawMessage) (time.Time, error) {
	s := strings.Trim(string(raw), `"`)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
			return time.Time{}, fmt.Errorf("%q is out of range", s)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither epoch seconds nor an RFC 3339 time", s)
	}
	return t.UTC(), nil
}

func jsonInt(raw json.RawMessage) (int, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	return strconv.Atoi(strings.Trim(string(raw), `"`))
}
