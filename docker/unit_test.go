//go:build linux

package docker

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// unit is a parsed systemd unit file: section -> directive -> values in order
// (a directive given twice, like Environment=, keeps both).
type unit map[string]map[string][]string

// parseUnit reads a unit file in systemd's syntax: [Section] headers,
// Key=Value lines, # and ; comments, backslash continuations.
func parseUnit(tb testing.TB, path string) unit {
	tb.Helper()
	f, err := os.Open(path)
	require.NoError(tb, err)
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line, cont = cont+" "+line, ""
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`)
			continue
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(tb, ok, "%s: %q is not Key=Value", path, line)
		require.NotEmpty(tb, section, "%s: %q before any section", path, line)
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	require.NoError(tb, sc.Err())
	return u
}

// one returns the only value of a [Service] directive ("" when absent).
func (u unit) one(tb testing.TB, key string) string {
	tb.Helper()
	vs := u["Service"][key]
	require.LessOrEqual(tb, len(vs), 1, "%s= given %d times", key, len(vs))
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// modelled lists the [Service] directives the emulator below reproduces, and
// the ones it knowingly leaves to systemd (sandboxing that only narrows what a
// process may do: a unit passing here can still fail there only by writing
// outside its state directory). Any other directive fails the test, so the
// emulation never silently ignores something new in a unit.
var modelled = map[string]bool{
	"Type": true, "User": true, "Group": true, "DynamicUser": true,
	"AmbientCapabilities": true, "CapabilityBoundingSet": true,
	"LoadCredential": true, "StateDirectory": true, "StateDirectoryMode": true,
	"Environment": true, "EnvironmentFile": true, "ExecStart": true,
	"NoNewPrivileges": true,
	// Not emulated (restart policy, stop handling, sandboxing):
	"Restart": true, "RestartSec": true, "TimeoutStopSec": true, "KillMode": true,
	"ProtectSystem": true, "ProtectHome": true, "PrivateTmp": true,
	"RestrictAddressFamilies": true,
}

// capNumbers are the capabilities units here may name (linux/capability.h).
var capNumbers = map[string]uintptr{"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}

// service is what systemd would run for a unit: the command line inside the
// root (the emulated host's /), its identity, capabilities and environment.
type service struct {
	name     string // e.g. muninn-bouncer.service
	root     string
	uid, gid uint32
	ambient  uint64 // ambient capabilities (also the only effective ones)
	bounding uint64 // the capability bounding set
	nnp      bool   // NoNewPrivileges=yes
	env      []string
	argv     []string
}

// emulate prepares what systemd does before ExecStart for the unit at path on
// the host whose / is root: it allocates the user (a DynamicUser= gets an unused
// uid from systemd's dynamic range; a User= that the host lacks gets uid, gid
// 64000+, as `useradd --system` would have made it), creates the
// StateDirectory= owned by it with StateDirectoryMode=, copies every
// LoadCredential= file (read as root, as PID 1 does) to
// /run/credentials/<unit>/ owned by the user, mode 0400, reads
// EnvironmentFile= as root, and expands ExecStart= (${VAR} and %d, %S, %%
// specifiers). Capabilities: AmbientCapabilities= within
// CapabilityBoundingSet=.
func emulate(tb testing.TB, path, root string, uid uint32) *service {
	tb.Helper()
	u := parseUnit(tb, path)
	for k := range u["Service"] {
		require.True(tb, modelled[k], "%s: the emulation does not model %s=: add it to the test", path, k)
	}
	s := &service{name: filepath.Base(path), root: root, uid: uid, gid: uid}
	require.Contains(tb, []string{"", "simple", "exec"}, u.one(tb, "Type"))
	dynamic := u.one(tb, "DynamicUser") == "yes"
	userName := u.one(tb, "User")
	require.True(tb, dynamic != (userName != ""), "%s: exactly one of DynamicUser=yes and User= (not root)", path)
	require.NotEqual(tb, "root", userName, "%s: the unit must not run as root", path)
	if g := u.one(tb, "Group"); g != "" {
		require.Equal(tb, userName, g, "%s: Group= is the user's own group", path)
	}
	home := "/"
	if userName != "" {
		home = "/var/lib/" + userName
	}
	env := map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "HOME": home,
		"USER": userName, "LOGNAME": userName, "SHELL": "/usr/sbin/nologin",
	}
	if dynamic {
		env["USER"], env["LOGNAME"] = strings.TrimSuffix(s.name, ".service"), strings.TrimSuffix(s.name, ".service")
	}

	// Capabilities: the ambient set, cut to the bounding set when one is given.
	bounding, hasBounding := map[string]bool{}, false
	for _, v := range u["Service"]["CapabilityBoundingSet"] {
		hasBounding = true
		for _, c := range strings.Fields(v) {
			bounding[c] = true
		}
	}
	s.bounding = ^uint64(0)
	if hasBounding {
		s.bounding = 0
		for c := range bounding {
			n, ok := capNumbers[c]
			require.True(tb, ok, "%s: unknown capability %s", path, c)
			s.bounding |= 1 << n
		}
	}
	for _, v := range u["Service"]["AmbientCapabilities"] {
		for _, c := range strings.Fields(v) {
			n, ok := capNumbers[c]
			require.True(tb, ok, "%s: unknown capability %s", path, c)
			if s.bounding&(1<<n) != 0 {
				s.ambient |= 1 << n
			}
		}
	}
	s.nnp = u.one(tb, "NoNewPrivileges") == "yes"

	// StateDirectory=: /var/lib/NAME, owned by the user.
	mode := os.FileMode(0o755)
	if m := u.one(tb, "StateDirectoryMode"); m != "" {
		n, err := strconv.ParseUint(m, 8, 32)
		require.NoError(tb, err)
		mode = os.FileMode(n)
	}
	for _, v := range u["Service"]["StateDirectory"] {
		for _, d := range strings.Fields(v) {
			p := filepath.Join(root, "var/lib", d)
			require.NoError(tb, os.MkdirAll(p, 0o755))
			require.NoError(tb, os.Chown(p, int(uid), int(uid)))
			require.NoError(tb, os.Chmod(p, mode))
			env["STATE_DIRECTORY"] = "/var/lib/" + d
		}
	}

	// LoadCredential=ID:PATH, read with PID 1's privileges.
	credDir := "/run/credentials/" + s.name
	for _, v := range u["Service"]["LoadCredential"] {
		id, src, ok := strings.Cut(v, ":")
		require.True(tb, ok, "%s: LoadCredential=%s", path, v)
		b, err := os.ReadFile(filepath.Join(root, src))
		require.NoError(tb, err, "%s: systemd cannot read the credential %s", path, src)
		dir := filepath.Join(root, credDir)
		require.NoError(tb, os.MkdirAll(filepath.Dir(dir), 0o755))
		require.NoError(tb, os.MkdirAll(dir, 0o500))
		require.NoError(tb, os.WriteFile(filepath.Join(dir, id), b, 0o400))
		require.NoError(tb, os.Chown(filepath.Join(dir, id), int(uid), int(uid)))
		require.NoError(tb, os.Chown(dir, int(uid), int(uid)))
		env["CREDENTIALS_DIRECTORY"] = credDir
	}

	// Environment= then EnvironmentFile= (read as root; "-" means optional).
	for _, v := range u["Service"]["Environment"] {
		for _, kv := range strings.Fields(v) {
			k, val, ok := strings.Cut(kv, "=")
			require.True(tb, ok, "%s: Environment=%s", path, kv)
			env[k] = val
		}
	}
	for _, v := range u["Service"]["EnvironmentFile"] {
		optional := strings.HasPrefix(v, "-")
		b, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(v, "-")))
		if optional && os.IsNotExist(err) {
			continue
		}
		require.NoError(tb, err, "%s: systemd cannot read %s", path, v)
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			k, val, ok := strings.Cut(line, "=")
			require.True(tb, ok, "%s: %q", v, line)
			env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	for k, v := range env {
		s.env = append(s.env, k+"="+v)
	}

	// ExecStart=: words, specifiers, ${VAR}.
	exec := u.one(tb, "ExecStart")
	require.NotEmpty(tb, exec, "%s: no ExecStart=", path)
	varRef := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	for _, w := range strings.Fields(exec) {
		w = strings.NewReplacer("%%", "%", "%d", credDir, "%S", "/var/lib").Replace(w)
		w = varRef.ReplaceAllStringFunc(w, func(m string) string { return env[varRef.FindStringSubmatch(m)[1]] })
		require.NotContains(tb, w, "$", "%s: the emulation expands only ${VAR}", path)
		s.argv = append(s.argv, w)
	}
	require.True(tb, filepath.IsAbs(s.argv[0]), "%s: ExecStart= needs an absolute path", path)
	return s
}

// command is how the service's process starts: this test binary as its
// launcher (see launch), which chroots into the emulated host, drops to the
// unit's user and capabilities and execs ExecStart, in its own process group.
func (s *service) command(tb testing.TB) *exec.Cmd {
	tb.Helper()
	self, err := os.Executable()
	require.NoError(tb, err)
	env := append(slices.Clone(s.env), launcherEnv+"=1", launcherEnv+"_ROOT="+s.root,
		fmt.Sprintf("%s_UID=%d", launcherEnv, s.uid), fmt.Sprintf("%s_GID=%d", launcherEnv, s.gid),
		fmt.Sprintf("%s_BOUNDING=%d", launcherEnv, s.bounding), fmt.Sprintf("%s_AMBIENT=%d", launcherEnv, s.ambient))
	if s.nnp {
		env = append(env, launcherEnv+"_NNP=1")
	}
	return &exec.Cmd{Path: self, Args: append([]string{self}, s.argv...), Env: env, Dir: "/",
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
}

// procStatus is what /proc/PID/status says of a process's privileges.
type procStatus struct {
	uid, gid           string
	eff, prm, amb, bnd uint64
	noNewPrivs         bool
}

// statusOf reads a process's ids, capability masks and no_new_privs flag.
func statusOf(tb testing.TB, pid int) procStatus {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(tb, err)
	var st procStatus
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		n, _ := strconv.ParseUint(v, 16, 64)
		switch k {
		case "Uid":
			st.uid = strings.Join(strings.Fields(v), " ")
		case "Gid":
			st.gid = strings.Join(strings.Fields(v), " ")
		case "CapEff":
			st.eff = n
		case "CapPrm":
			st.prm = n
		case "CapAmb":
			st.amb = n
		case "CapBnd":
			st.bnd = n
		case "NoNewPrivs":
			st.noNewPrivs = v == "1"
		}
	}
	return st
}

// documentedFile is one row of README.md's "Files and permissions" table.
type documentedFile struct {
	path, owner string
	mode        os.FileMode
}

// readmeFiles parses the table between <!-- files:begin --> and
// <!-- files:end --> in README.md.
func readmeFiles(tb testing.TB) map[string]documentedFile {
	tb.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(tb, err)
	_, rest, ok := strings.Cut(string(b), "<!-- files:begin -->")
	require.True(tb, ok, "README.md has no files table")
	table, _, ok := strings.Cut(rest, "<!-- files:end -->")
	require.True(tb, ok)
	out := map[string]documentedFile{}
	for _, line := range strings.Split(strings.TrimSpace(table), "\n")[2:] {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		require.GreaterOrEqual(tb, len(cells), 3, "%q", line)
		cell := func(i int) string { return strings.Trim(strings.TrimSpace(cells[i]), "`") }
		m, err := strconv.ParseUint(cell(2), 8, 32)
		require.NoError(tb, err, "%q", line)
		out[cell(0)] = documentedFile{path: cell(0), owner: cell(1), mode: os.FileMode(m)}
	}
	return out
}

// requireDocumented checks that the file at the documented path under root has
// the README's mode and owner; owner "user" stands for the unit's user.
func requireDocumented(tb testing.TB, root string, f documentedFile, user, group string, uid uint32) {
	tb.Helper()
	fi, err := os.Stat(filepath.Join(root, f.path))
	require.NoError(tb, err, "README lists %s", f.path)
	require.Equal(tb, f.mode, fi.Mode().Perm(), "%s: mode", f.path)
	st := fi.Sys().(*syscall.Stat_t)
	want := f.owner
	got := ownerName(st.Uid, uid, user) + ":" + ownerName(st.Gid, uid, group)
	if want == "bouncer" {
		want = user + ":" + group
	}
	require.Equal(tb, want, got, "%s: owner", f.path)
}

func ownerName(id, unitID uint32, unitName string) string {
	switch id {
	case 0:
		return "root"
	case unitID:
		return unitName
	}
	return strconv.Itoa(int(id))
}

// placeDocumented creates a file or dir the README lists under root with the
// documented owner and mode, as an operator following it would.
func placeDocumented(tb testing.TB, root string, f documentedFile, content []byte, dir bool, ids map[string]uint32) {
	tb.Helper()
	p := filepath.Join(root, f.path)
	require.NoError(tb, os.MkdirAll(filepath.Dir(p), 0o755))
	if dir {
		require.NoError(tb, os.MkdirAll(p, f.mode))
	} else {
		require.NoError(tb, os.WriteFile(p, content, f.mode))
	}
	user, group, _ := strings.Cut(f.owner, ":")
	uid, ok := ids[user]
	require.True(tb, ok, "owner %s", f.owner)
	gid, ok := ids[group]
	require.True(tb, ok, "group %s", f.owner)
	require.NoError(tb, os.Chown(p, int(uid), int(gid)))
	require.NoError(tb, os.Chmod(p, f.mode))
}
