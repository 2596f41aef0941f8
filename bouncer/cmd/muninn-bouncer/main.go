//go:build linux

// Command muninn-bouncer enforces muninn rulesets with nftables.
//
// Configuration comes from a YAML file (--config), then the environment
// (MUNINN_BOUNCER_*), then flags, each overriding the previous.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/muninn/muninn/bouncer"
	"github.com/muninn/muninn/bouncer/nft"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// config is the whole configuration of the bouncer.
type config struct {
	Server    string        `yaml:"server"`
	Key       string        `yaml:"key"`
	KeyFile   string        `yaml:"key_file"`
	CAFile    string        `yaml:"ca_file"`
	Table     string        `yaml:"table"`
	Priority  int           `yaml:"priority"`
	StateDir  string        `yaml:"state_dir"`
	Wait      time.Duration `yaml:"wait"`
	Heartbeat time.Duration `yaml:"heartbeat"`
	Check     time.Duration `yaml:"check"`
	LogLevel  string        `yaml:"log_level"`
	LogFormat string        `yaml:"log_format"`
	// Watch lists the log files the bouncer tails and sends to POST /events.
	Watch []bouncer.Watch `yaml:"watch"`
	// SpoolBytes bounds the events kept on disk (state_dir/spool) while the
	// server is unreachable; the oldest go first (default 16 MiB).
	SpoolBytes int64 `yaml:"spool_bytes"`
}

func defaults() config {
	return config{
		Table: nft.DefaultTable, Priority: nft.DefaultPriority, StateDir: "/var/lib/muninn-bouncer",
		Wait: 30 * time.Second, Heartbeat: 30 * time.Second, Check: 5 * time.Second,
		LogLevel: "info", LogFormat: "text",
	}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "muninn-bouncer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("muninn-bouncer", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML configuration file")
	dryRun := fs.Bool("dry-run", false, "print the nft script instead of applying it")
	once := fs.Bool("once", false, "apply the saved and current renders, then exit")
	remove := fs.Bool("remove", false, "delete the bouncer's table and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	server := fs.String("server", "", "server URL (MUNINN_BOUNCER_SERVER)")
	keyFile := fs.String("key-file", "", "file holding the bouncer key (MUNINN_BOUNCER_KEY_FILE)")
	caFile := fs.String("ca-file", "", "PEM CA certificate(s) to trust for an https server, besides the system's (MUNINN_BOUNCER_CA_FILE)")
	table := fs.String("table", "", "nftables table, family inet (MUNINN_BOUNCER_TABLE)")
	priority := fs.String("priority", "", "base chain priority (MUNINN_BOUNCER_PRIORITY)")
	stateDir := fs.String("state-dir", "", "state directory (MUNINN_BOUNCER_STATE_DIR)")
	wait := fs.Duration("wait", 0, "long-poll wait (MUNINN_BOUNCER_WAIT)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (MUNINN_BOUNCER_LOG_LEVEL)")
	logFormat := fs.String("log-format", "", "text or json (MUNINN_BOUNCER_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("muninn-bouncer", version)
		return nil
	}

	cfg := defaults()
	if *configPath != "" {
		b, err := os.ReadFile(*configPath)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("config: %s: %w", *configPath, err)
		}
	}
	if err := fromEnv(&cfg); err != nil {
		return err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Server, *server)
	set(&cfg.KeyFile, *keyFile)
	set(&cfg.CAFile, *caFile)
	set(&cfg.Table, *table)
	set(&cfg.StateDir, *stateDir)
	set(&cfg.LogLevel, *logLevel)
	set(&cfg.LogFormat, *logFormat)
	if *priority != "" {
		p, err := strconv.Atoi(*priority)
		if err != nil {
			return fmt.Errorf("config: priority: %w", err)
		}
		cfg.Priority = p
	}
	if *wait > 0 {
		cfg.Wait = *wait
	}
	if cfg.KeyFile != "" && cfg.Key == "" {
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("config: key file: %w", err)
		}
		cfg.Key = strings.TrimSpace(string(b))
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var serverAddrs []netip.Addr
	if cfg.Server != "" && !*remove {
		// The table accepts the server's addresses before any rule, so no rule
		// can cut the bouncer off from it. Replies to the bouncer's own
		// connections are accepted whatever this finds.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		serverAddrs, err = bouncer.ServerAddrs(rctx, cfg.Server, net.DefaultResolver.LookupNetIP)
		cancel()
		if err != nil {
			log.Warn("Could not resolve the server's addresses; only replies to the bouncer's own connections are accepted before the rules.", "error", err)
		}
	}
	var fw bouncer.Firewall = nft.New(nft.Options{Table: cfg.Table, Priority: int32(cfg.Priority), Server: serverAddrs, Logger: log})
	if *dryRun {
		fw = bouncer.NewDryRun(os.Stdout, cfg.Table, int32(cfg.Priority), serverAddrs)
	}
	if *remove {
		if err := fw.Remove(ctx); err != nil {
			return err
		}
		log.Info("Removed the table.", "table", cfg.Table)
		return nil
	}
	if cfg.Server == "" || cfg.Key == "" {
		return errors.New("config: the server URL and the bouncer key are required")
	}
	hc, err := bouncer.HTTPClient(cfg.CAFile)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	hostname, _ := os.Hostname()
	client := bouncer.NewClient(cfg.Server, cfg.Key, hc).WithUserAgent("muninn-bouncer/" + version)
	s := bouncer.NewSyncer(client, fw, bouncer.Config{
		StateDir: cfg.StateDir, Wait: cfg.Wait, HeartbeatEvery: cfg.Heartbeat, CheckEvery: cfg.Check,
		Hostname: hostname, Version: version, DryRun: *dryRun,
	}, log)
	if *dryRun {
		log.Info("Dry run: printing the nft script; nothing is applied, saved or reported.", "server", cfg.Server)
	}
	if *once || *dryRun {
		return s.Once(ctx)
	}
	log.Info("Starting.", "server", cfg.Server, "table", cfg.Table, "state_dir", cfg.StateDir, "version", version)
	if len(cfg.Watch) > 0 {
		spool, err := bouncer.OpenSpool(filepath.Join(cfg.StateDir, "spool"), cfg.SpoolBytes, log)
		if err != nil {
			return err
		}
		go func() { _ = spool.Run(ctx, client.SendEvents, 0) }()
		if err := startWatches(ctx, cfg.Watch, cfg.StateDir, spool, log); err != nil {
			return err
		}
	}
	if err := s.Run(ctx); err != nil {
		return err
	}
	// A clean stop leaves the rules in place: the host stays protected.
	log.Info("Stopped; the rules stay in place.")
	return nil
}

// startWatches starts a Watcher (a path) or a JournalWatcher (journal
// matches) per watch entry, each adding to spool.
func startWatches(ctx context.Context, watches []bouncer.Watch, stateDir string, spool *bouncer.Spool, log *slog.Logger) error {
	for _, w := range watches {
		if (w.Path == "") == (len(w.Journal) == 0) {
			return fmt.Errorf("config: watch: each entry has either a path or journal matches (%q)", w.Source())
		}
		pos := bouncer.PosFileFor(stateDir, w.Source())
		var run func(context.Context) error
		if w.Path != "" {
			run = (&bouncer.Watcher{Watch: w, PosFile: pos, Send: spool.Add}).Run
		} else {
			run = (&bouncer.JournalWatcher{Watch: w, CursorFile: pos, Send: spool.Add}).Run
		}
		go func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				log.Error("Stopped watching.", "source", w.Source(), "error", err)
			}
		}()
		log.Info("Watching.", "source", w.Source(), "format", w.Format)
	}
	return nil
}

func fromEnv(cfg *config) error {
	env := func(name string, dst *string) {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			*dst = v
		}
	}
	env("MUNINN_BOUNCER_SERVER", &cfg.Server)
	env("MUNINN_BOUNCER_KEY", &cfg.Key)
	env("MUNINN_BOUNCER_KEY_FILE", &cfg.KeyFile)
	env("MUNINN_BOUNCER_CA_FILE", &cfg.CAFile)
	env("MUNINN_BOUNCER_TABLE", &cfg.Table)
	env("MUNINN_BOUNCER_STATE_DIR", &cfg.StateDir)
	env("MUNINN_BOUNCER_LOG_LEVEL", &cfg.LogLevel)
	env("MUNINN_BOUNCER_LOG_FORMAT", &cfg.LogFormat)
	if v := os.Getenv("MUNINN_BOUNCER_PRIORITY"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("config: MUNINN_BOUNCER_PRIORITY: %w", err)
		}
		cfg.Priority = p
	}
	if v := os.Getenv("MUNINN_BOUNCER_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("config: MUNINN_BOUNCER_WAIT: %w", err)
		}
		cfg.Wait = d
	}
	return nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("config: log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("config: log format %q: want text or json", format)
}
