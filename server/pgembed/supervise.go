package pgembed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Supervision backoff: the first restart waits restartBackoff, each failed
// one doubles it up to maxRestartBackoff; a successful start resets it.
const (
	restartBackoff    = time.Second
	maxRestartBackoff = 30 * time.Second
)

// Supervise watches the postmaster every interval until ctx ends or Stop is
// called, and starts it again when it has exited (killed by the OOM killer,
// an operator, a crash): with backoff while the restart fails. Meanwhile
// the store's pings fail, so /readyz answers 503 until the restart; the
// connection pool reconnects by itself. pg_ctl start daemonizes the
// postmaster, so it is not our child: liveness is read from its pid file.
func (c *Cluster) Supervise(ctx context.Context, interval time.Duration) {
	backoff := restartBackoff
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.isStopped() || c.Alive() {
			continue
		}
		c.logger.Warn("The embedded PostgreSQL server is not running; restarting it.", "data_dir", c.dataDir)
		for {
			err := c.restart(ctx)
			if err == nil {
				c.logger.Info("Restarted the embedded PostgreSQL server.", "data_dir", c.dataDir)
				backoff = restartBackoff
				break
			}
			if ctx.Err() != nil || errors.Is(err, errStopped) {
				return
			}
			c.logger.Error("Could not restart the embedded PostgreSQL server; retrying.", "error", err, "backoff", backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxRestartBackoff)
		}
	}
}

var errStopped = errors.New("pgembed: the cluster was stopped")

func (c *Cluster) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// restart starts the server again unless Stop has been called (Stop waits for
// it, so it never races a restart).
func (c *Cluster) restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errStopped
	}
	if err := c.startServer(ctx); err != nil {
		return fmt.Errorf("pgembed: restart: %w", err)
	}
	return nil
}

// PID returns the postmaster's pid from its pid file, 0 when there is none.
func (c *Cluster) PID() int {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// Alive reports whether the postmaster named by the pid file is running. A
// zombie (killed, not yet reaped) counts as gone.
func (c *Cluster) Alive() bool {
	pid := c.PID()
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// /proc/PID/stat: "pid (comm) S ..."; comm may hold spaces or parens,
	// so the state is the first field after the last ')'.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}
