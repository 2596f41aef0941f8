package sensor_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/sensor"
)

// TestRealOpenSSHLog runs Debian's OpenSSH server on loopback with its log
// in a file (sshd -E), fails three password logins with the real ssh client
// through sshpass, and parses what sshd wrote: exactly three
// ssh-auth-failure events of 127.0.0.1, with the users tried. Needs root
// (sshd) and openssh-server, openssh-client, sshpass (make deps); under
// CI=true a missing one fails.
func TestRealOpenSSHLog(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"/usr/sbin/sshd", "ssh", "sshpass", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil || os.Geteuid() != 0 {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s or root is missing (run make deps as root)", bin)
			}
			t.Skipf("needs root and %s", bin)
		}
	}
	dir := t.TempDir()
	require.NoError(t, exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "hostkey")).Run())
	require.NoError(t, os.MkdirAll("/run/sshd", 0o755))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	cfg := strings.Join([]string{"Port " + strconv.Itoa(port), "ListenAddress 127.0.0.1", "HostKey " + filepath.Join(dir, "hostkey"),
		"PasswordAuthentication yes", "KbdInteractiveAuthentication no", "UsePAM no", "PidFile " + filepath.Join(dir, "pid"), "LogLevel INFO", ""}, "\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600))
	logPath := filepath.Join(dir, "auth.log")
	ctx, cancel := context.WithCancel(context.Background())
	sshd := exec.CommandContext(ctx, "/usr/sbin/sshd", "-D", "-f", filepath.Join(dir, "sshd_config"), "-E", logPath)
	require.NoError(t, sshd.Start())
	t.Cleanup(func() { cancel(); _ = sshd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	for _, user := range []string{"nosuchuser", "admin", "root"} {
		cmd := exec.Command("sshpass", "-p", "wrong", "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=5",
			"-p", strconv.Itoa(port), user+"@127.0.0.1", "true")
		require.Error(t, cmd.Run(), "the login must fail")
	}
	var users []string
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(logPath)
		require.NoError(t, err)
		p, err := sensor.NewParser("sshd", sensor.Options{})
		require.NoError(t, err)
		users = users[:0]
		for _, line := range strings.Split(string(raw), "\n") {
			evs, err := p.Parse(line)
			require.NoError(t, err)
			for _, ev := range evs {
				if ev.Kind == sensor.KindSSHAuthFailure {
					require.Equal(t, "127.0.0.1", ev.Addr.String())
					users = append(users, ev.User)
				}
			}
		}
		return len(users) == 3
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"nosuchuser", "admin", "root"}, users)
}
