package pgembed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoBinaries reports that no PostgreSQL server binaries (initdb, pg_ctl,
// postgres) were found. The caller can branch on it to explain that an
// external database is the alternative.
var ErrNoBinaries = errors.New("pgembed: no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: " +
	"install them (Debian/Ubuntu: apt-get install postgresql) or set MUNINN_DATABASE_URL to use an external database")

// requiredBinaries are the programs a bin dir must hold to be usable.
var requiredBinaries = []string{"initdb", "pg_ctl", "postgres"}

// debianGlob matches the versioned bin dirs of Debian's postgresql-NN packages,
// which are not on PATH.
const debianGlob = "/usr/lib/postgresql/*/bin"

// sourceBinDir is where a PostgreSQL built from source installs by default.
const sourceBinDir = "/usr/local/pgsql/bin"

// FindBinDir returns the first directory holding initdb, pg_ctl and postgres:
// the directories on PATH, then /usr/lib/postgresql/*/bin newest major
// version first, then /usr/local/pgsql/bin. It returns an error wrapping
// ErrNoBinaries when there is none.
func FindBinDir() (string, error) {
	dirs := binDirCandidates(os.Getenv("PATH"), debianGlob, sourceBinDir)
	if len(dirs) == 0 {
		return "", ErrNoBinaries
	}
	return dirs[0], nil
}

// binDirCandidates lists, in preference order and without duplicates, the
// usable bin dirs found on pathEnv, under glob and in the extra dirs.
func binDirCandidates(pathEnv, glob string, extra ...string) []string {
	var dirs []string
	for _, d := range filepath.SplitList(pathEnv) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	versioned, _ := filepath.Glob(glob) // only ErrBadPattern, and the pattern is ours
	slices.SortStableFunc(versioned, func(a, b string) int {
		return versionOfDebianBinDir(b) - versionOfDebianBinDir(a)
	})
	dirs = append(dirs, versioned...)
	dirs = append(dirs, extra...)

	var out []string
	seen := map[string]bool{}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil || seen[abs] || !hasBinaries(abs) {
			continue
		}
		seen[abs] = true
		out = append(out, abs)
	}
	return out
}

// versionOfDebianBinDir extracts NN from /usr/lib/postgresql/NN/bin so that
// 16 sorts before 9.6 (a string sort would not); unparsable names sort last.
func versionOfDebianBinDir(dir string) int {
	v := filepath.Base(filepath.Dir(dir))
	major, minor, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return -1
	}
	m, _ := strconv.Atoi(minor)
	return n*100 + m
}

// hasBinaries reports whether dir holds every required executable.
func hasBinaries(dir string) bool {
	for _, name := range requiredBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// checkBinDir validates an explicitly configured bin dir.
func checkBinDir(dir string) error {
	if !hasBinaries(dir) {
		return fmt.Errorf("pgembed: bin dir %q lacks one of %s: %w",
			dir, strings.Join(requiredBinaries, ", "), ErrNoBinaries)
	}
	return nil
}
