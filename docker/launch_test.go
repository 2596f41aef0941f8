//go:build linux

package docker

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// launcherEnv marks a run of this test binary as the launcher of a service's
// process (see launch); the other launcher variables start with it too.
const launcherEnv = "MUNINN_TEST_LAUNCH"

func TestMain(m *testing.M) {
	if os.Getenv(launcherEnv) != "" {
		if err := launch(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "launch:", err)
			os.Exit(126)
		}
	}
	os.Exit(m.Run())
}

// launch does, as root, what systemd's service manager does between fork and
// exec, in its order: drop the capabilities outside CapabilityBoundingSet=
// from the bounding set, chroot into the emulated host, switch to the unit's
// user and group (no supplementary groups) keeping only the ambient
// capabilities, set NoNewPrivileges=, then exec argv with the service's
// environment (its own variables removed). It returns only on failure.
func launch(argv []string) error {
	runtime.LockOSThread() // keepcaps and the capability sets are per thread
	env := map[string]string{}
	var serviceEnv []string
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, launcherEnv) {
			env[k] = v
		} else {
			serviceEnv = append(serviceEnv, kv)
		}
	}
	num := func(k string) (int, error) { return strconv.Atoi(env[launcherEnv+"_"+k]) }
	mask := func(k string) (uint64, error) { return strconv.ParseUint(env[launcherEnv+"_"+k], 10, 64) }
	uid, err := num("UID")
	if err != nil {
		return err
	}
	gid, err := num("GID")
	if err != nil {
		return err
	}
	bounding, err := mask("BOUNDING")
	if err != nil {
		return err
	}
	ambient, err := mask("AMBIENT")
	if err != nil {
		return err
	}
	for c := 0; c < 64; c++ {
		if bounding&(1<<c) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	if err := unix.Chroot(env[launcherEnv+"_ROOT"]); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	// Raw, per-thread calls: this thread is the one that execs (Go's
	// all-threads variants refuse to run in a cgo binary).
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return fmt.Errorf("setgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("setuid: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(ambient), Permitted: uint32(ambient), Inheritable: uint32(ambient)},
		{Effective: uint32(ambient >> 32), Permitted: uint32(ambient >> 32), Inheritable: uint32(ambient >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	for c := 0; c < 64; c++ {
		if ambient&(1<<c) != 0 {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
				return fmt.Errorf("raise ambient capability %d: %w", c, err)
			}
		}
	}
	if env[launcherEnv+"_NNP"] == "1" {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	return unix.Exec(argv[0], argv, serviceEnv)
}
