// Package config reads muninn's one Config struct from MUNINN_* environment
// variables; a secret may come from the file named by its *_FILE twin.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is everything muninn serve and muninn worker are told.
type Config struct {
	// DatabaseURL is a PostgreSQL URL; empty means the embedded cluster under DataDir.
	DatabaseURL string
	// AdminToken becomes the first admin token when the database has none.
	AdminToken string
	// DataDir holds the embedded cluster and geo data.
	DataDir string
	// Listen is the HTTP address.
	Listen string
	// BaseURL is how people reach the server (printed, used in links).
	BaseURL string
	// TLSCert and TLSKey are PEM files: when set, the server speaks HTTPS
	// only, reloading the pair when the files change.
	TLSCert string
	TLSKey  string
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string
	LogFormat string
	// MaxIngestBytes bounds one ingest body.
	MaxIngestBytes int64
	// IngestVisibleWithin (MUNINN_INGEST_VISIBLE_WITHIN, e.g. 1s) lets an
	// ingest answer once durable while the merger lags less than it; unset:
	// every answer waits until its observations are visible.
	IngestVisibleWithin time.Duration
	// SightingRetention is how long raw sighting events are kept.
	SightingRetention time.Duration
	// ExpiredRetention is how long expired assertions are kept before pruning.
	ExpiredRetention time.Duration
	// DBMaxConns bounds the connection pool.
	DBMaxConns int32
	// Workers runs River workers inside serve.
	Workers bool
	// HoneypotTTL is how long a honeypot tag reported by a bouncer lives.
	HoneypotTTL time.Duration
	// MMDBRebuild is the least time between two builds of the MMDB export
	// (MUNINN_MMDB_REBUILD, default 1m): while data keeps changing, requests
	// in between get the last build.
	MMDBRebuild time.Duration
	// HoneypotRate is how many honeypot hits per second one bouncer may
	// report (MUNINN_HONEYPOT_RATE).
	HoneypotRate float64

	// GeoDir holds the geo databases (`make geodata`); default DataDir/geo.
	GeoDir string
	// RDAP enables RDAP lookups of stored addresses; RDAPRate is queries per
	// second per registry; RDAPWhois enables the port-43 fallback; RDAPBaseURL
	// sends every query to one RDAP server (a mirror) instead of the registries.
	RDAP        bool
	RDAPRate    float64
	RDAPWhois   bool
	RDAPBaseURL string
	// RDNS enables PTR lookups of stored addresses through Resolver
	// (host:port; empty means /etc/resolv.conf).
	RDNS     bool
	Resolver string
	// EnrichSpecial allows RDAP and PTR lookups of special-use, private and
	// documentation addresses (default false: recorded as skipped).
	EnrichSpecial bool
	// QueueConcurrency bounds the default job queue; EnrichConcurrency the
	// queue of outside lookups (RDAP, PTR).
	QueueConcurrency  int
	EnrichConcurrency int

	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (MUNINN_TRUSTED_PROXIES, CIDRs or
	// addresses, comma-separated; default none: the peer is the client).
	TrustedProxies []netip.Prefix
	// SensorOwnAddresses are the sensor hosts' own addresses
	// (MUNINN_SENSOR_OWN_ADDRESSES, CIDRs or addresses, comma-separated):
	// events from them are counted but, like private and loopback
	// addresses, never tagged by a detection that does not include private
	// addresses. The address an events request comes from is always one.
	SensorOwnAddresses []netip.Prefix
	// LoginHashConcurrency bounds the password hashes computed at once
	// (argon2id, 19 MiB each).
	LoginHashConcurrency int
	// FeedAllowNetworks are destinations feeds may fetch from although they
	// are loopback, private, link-local, multicast or unspecified
	// (MUNINN_FEED_ALLOW_NETWORKS, CIDRs; default none).
	FeedAllowNetworks []netip.Prefix
	// FeedFileDir is the only directory file:// feeds may read (default
	// DataDir/feeds).
	FeedFileDir string
	// StatementTimeout bounds every SQL statement of the server's pool.
	StatementTimeout time.Duration
	// SearchConcurrency bounds the searches and exports running at once;
	// more wait up to SearchQueueWait, then get 503 with Retry-After.
	SearchConcurrency int
	SearchQueueWait   time.Duration
	// MaxConnsPerClient bounds the open HTTP connections of one peer address.
	MaxConnsPerClient int

	// AlertKey seals alert channel URLs: 64 hex digits (MUNINN_ALERT_KEY or
	// MUNINN_ALERT_KEY_FILE); empty means the key file AlertKeyFile
	// (default DataDir/alert.key), created on first start. Every process
	// sharing a database needs the same key.
	AlertKey     string
	AlertKeyFile string
	// EventRetention is how long events are kept (MUNINN_EVENT_RETENTION).
	EventRetention time.Duration
	// BouncerSilentAfter and BouncerLagAfter: a bouncer not seen, or not
	// confirming a ruleset's current version, for this long becomes an
	// event (MUNINN_ALERT_BOUNCER_SILENT, MUNINN_ALERT_BOUNCER_LAG).
	BouncerSilentAfter time.Duration
	BouncerLagAfter    time.Duration
	// RenderAlertElements is the render size limit: a render serving more
	// CIDRs becomes a render.size event (MUNINN_RENDER_ALERT_ELEMENTS).
	RenderAlertElements int
	// FlowListen is where flows are received (MUNINN_FLOW_LISTEN, a comma
	// list of netflow://host:port and sflow://host:port; default none: serve
	// receives no flows). `muninn flows` defaults to
	// "netflow://:2055,sflow://:6343".
	FlowListen string
	// FlowFlush is how often aggregated flows are written (default 10s).
	FlowFlush time.Duration
	// FlowRetention5m and FlowRetention1h keep the 5-minute and 1-hour
	// flow aggregates (default 48h and 2160h).
	FlowRetention5m time.Duration
	FlowRetention1h time.Duration
	// FlowAlertTags are tags whose contact by an inside host is an event
	// like a malicious classification (MUNINN_FLOW_ALERT_TAGS, comma list).
	FlowAlertTags []string
	// FlowLeaseFile is a dnsmasq lease file naming inside hosts.
	FlowLeaseFile string
	// FlowClickHouseURL, when set, sends every raw flow to ClickHouse
	// (MUNINN_FLOW_CLICKHOUSE_URL, a clickhouse-go DSN:
	// clickhouse://user:pass@host:9000/db for the native protocol,
	// http(s)://user:pass@host:8123/db for the HTTP interface) into
	// FlowClickHouseTable (MUNINN_FLOW_CLICKHOUSE_TABLE, default
	// muninn.flows_raw) in inserts of FlowClickHouseBatch rows
	// (MUNINN_FLOW_CLICKHOUSE_BATCH, default 10000). flow.NewClickHouseSink
	// checks the URL and table.
	FlowClickHouseURL   string
	FlowClickHouseTable string
	FlowClickHouseBatch int
}

// prefixList parses a comma-separated list of CIDRs or addresses.
func prefixList(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// FromEnv reads the configuration from getenv (os.Getenv in main).
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		DataDir:           "./data",
		Listen:            "127.0.0.1:8080",
		LogLevel:          "info",
		LogFormat:         "text",
		MaxIngestBytes:    100 << 20,
		SightingRetention: 30 * 24 * time.Hour,
		ExpiredRetention:  7 * 24 * time.Hour,
		DBMaxConns:        20,
		Workers:           true,
		HoneypotTTL:       24 * time.Hour,
		MMDBRebuild:       time.Minute,
		HoneypotRate:      100,
		RDAP:              true,
		RDAPRate:          1,
		RDAPWhois:         true,
		RDNS:              true,
		QueueConcurrency:  10,
		EnrichConcurrency: 4,

		LoginHashConcurrency: 2,
		StatementTimeout:     30 * time.Second,
		SearchConcurrency:    4,
		SearchQueueWait:      5 * time.Second,
		MaxConnsPerClient:    64,

		EventRetention:      30 * 24 * time.Hour,
		BouncerSilentAfter:  10 * time.Minute,
		BouncerLagAfter:     15 * time.Minute,
		RenderAlertElements: 1_000_000,
		FlowFlush:           10 * time.Second,
		FlowRetention5m:     48 * time.Hour,
		FlowRetention1h:     90 * 24 * time.Hour,
	}
	var errs []error
	str := func(name string, dst *string) {
		v := getenv(name)
		if f := getenv(name + "_FILE"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
				return
			}
			v = strings.TrimSpace(string(b))
		}
		if v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive duration such as 720h", name, v))
				return
			}
			*dst = d
		}
	}
	str("MUNINN_DATABASE_URL", &c.DatabaseURL)
	str("MUNINN_ADMIN_TOKEN", &c.AdminToken)
	str("MUNINN_DATA_DIR", &c.DataDir)
	str("MUNINN_LISTEN", &c.Listen)
	str("MUNINN_BASE_URL", &c.BaseURL)
	str("MUNINN_TLS_CERT", &c.TLSCert)
	str("MUNINN_TLS_KEY", &c.TLSKey)
	str("MUNINN_LOG_LEVEL", &c.LogLevel)
	str("MUNINN_LOG_FORMAT", &c.LogFormat)
	dur("MUNINN_SIGHTING_RETENTION", &c.SightingRetention)
	dur("MUNINN_EXPIRED_RETENTION", &c.ExpiredRetention)
	dur("MUNINN_HONEYPOT_TTL", &c.HoneypotTTL)
	dur("MUNINN_INGEST_VISIBLE_WITHIN", &c.IngestVisibleWithin)
	dur("MUNINN_MMDB_REBUILD", &c.MMDBRebuild)
	str("MUNINN_GEO_DIR", &c.GeoDir)
	str("MUNINN_RDAP_BASE_URL", &c.RDAPBaseURL)
	str("MUNINN_RESOLVER", &c.Resolver)
	boolean := func(name string, dst *bool) {
		if v := getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			switch strings.ToLower(v) { // the words people write in unit files
			case "on", "yes":
				b, err = true, nil
			case "off", "no":
				b, err = false, nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not true or false", name, v))
				return
			}
			*dst = b
		}
	}
	positive := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive number", name, v))
				return
			}
			*dst = n
		}
	}
	boolean("MUNINN_RDAP", &c.RDAP)
	boolean("MUNINN_RDAP_WHOIS", &c.RDAPWhois)
	boolean("MUNINN_RDNS", &c.RDNS)
	boolean("MUNINN_ENRICH_SPECIAL", &c.EnrichSpecial)
	positive("MUNINN_QUEUE_CONCURRENCY", &c.QueueConcurrency)
	positive("MUNINN_ENRICH_CONCURRENCY", &c.EnrichConcurrency)
	positive("MUNINN_LOGIN_HASH_CONCURRENCY", &c.LoginHashConcurrency)
	positive("MUNINN_SEARCH_CONCURRENCY", &c.SearchConcurrency)
	positive("MUNINN_MAX_CONNS_PER_CLIENT", &c.MaxConnsPerClient)
	dur("MUNINN_STATEMENT_TIMEOUT", &c.StatementTimeout)
	dur("MUNINN_SEARCH_QUEUE_WAIT", &c.SearchQueueWait)
	str("MUNINN_FEED_FILE_DIR", &c.FeedFileDir)
	str("MUNINN_ALERT_KEY", &c.AlertKey)
	dur("MUNINN_EVENT_RETENTION", &c.EventRetention)
	dur("MUNINN_ALERT_BOUNCER_SILENT", &c.BouncerSilentAfter)
	dur("MUNINN_ALERT_BOUNCER_LAG", &c.BouncerLagAfter)
	positive("MUNINN_RENDER_ALERT_ELEMENTS", &c.RenderAlertElements)
	str("MUNINN_FLOW_LISTEN", &c.FlowListen)
	dur("MUNINN_FLOW_FLUSH", &c.FlowFlush)
	dur("MUNINN_FLOW_RETENTION_5M", &c.FlowRetention5m)
	dur("MUNINN_FLOW_RETENTION_1H", &c.FlowRetention1h)
	str("MUNINN_FLOW_LEASE_FILE", &c.FlowLeaseFile)
	str("MUNINN_FLOW_CLICKHOUSE_URL", &c.FlowClickHouseURL)
	str("MUNINN_FLOW_CLICKHOUSE_TABLE", &c.FlowClickHouseTable)
	positive("MUNINN_FLOW_CLICKHOUSE_BATCH", &c.FlowClickHouseBatch)
	for _, t := range strings.Split(getenv("MUNINN_FLOW_ALERT_TAGS"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.FlowAlertTags = append(c.FlowAlertTags, t)
		}
	}
	for name, dst := range map[string]*[]netip.Prefix{"MUNINN_TRUSTED_PROXIES": &c.TrustedProxies, "MUNINN_FEED_ALLOW_NETWORKS": &c.FeedAllowNetworks,
		"MUNINN_SENSOR_OWN_ADDRESSES": &c.SensorOwnAddresses} {
		if v := getenv(name); v != "" {
			ps, err := prefixList(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			*dst = ps
		}
	}
	if v := getenv("MUNINN_RDAP_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			errs = append(errs, fmt.Errorf("MUNINN_RDAP_RATE: %q is not a positive number of queries per second", v))
		} else {
			c.RDAPRate = r
		}
	}
	if v := getenv("MUNINN_HONEYPOT_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0) || math.IsInf(r, 0) {
			errs = append(errs, fmt.Errorf("MUNINN_HONEYPOT_RATE: %q is not a positive number of hits per second", v))
		} else {
			c.HoneypotRate = r
		}
	}
	if v := getenv("MUNINN_MAX_INGEST_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("MUNINN_MAX_INGEST_BYTES: %q is not a positive number of bytes", v))
		}
		c.MaxIngestBytes = n
	}
	if v := getenv("MUNINN_DB_MAX_CONNS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 2 {
			errs = append(errs, fmt.Errorf("MUNINN_DB_MAX_CONNS: %q must be a number of at least 2", v))
		}
		c.DBMaxConns = int32(n)
	}
	if v := getenv("MUNINN_WORKERS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("MUNINN_WORKERS: %q is not true or false", v))
		}
		c.Workers = b
	}
	if c.BaseURL == "" {
		c.BaseURL = "http://" + c.Listen
		if c.TLSCert != "" {
			c.BaseURL = "https://" + c.Listen
		}
	}
	if c.GeoDir == "" {
		c.GeoDir = filepath.Join(c.DataDir, "geo")
	}
	if c.FeedFileDir == "" {
		c.FeedFileDir = filepath.Join(c.DataDir, "feeds")
	}
	c.AlertKeyFile = filepath.Join(c.DataDir, "alert.key")
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, c.Validate()
}

// Validate checks values that do not depend on the environment's syntax.
func (c Config) Validate() error {
	var errs []error
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("MUNINN_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("MUNINN_LOG_FORMAT: %q is not text or json", c.LogFormat))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 20 {
		errs = append(errs, errors.New("MUNINN_ADMIN_TOKEN: must be at least 20 characters"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("MUNINN_DATA_DIR: must not be empty"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("MUNINN_TLS_CERT and MUNINN_TLS_KEY: set both (PEM files) or neither"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
