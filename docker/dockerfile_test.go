// Package docker holds no code: its tests check the packaging in this
// directory (systemd units, the bouncer's install script, Dockerfiles) against
// what README.md documents.
package docker

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// distrolessNonroot is the uid and gid of the nonroot user of
// gcr.io/distroless/*:nonroot images.
const distrolessNonroot = "65532:65532"

// TestDockerIgnore: nothing secret or bulky reaches the build context (the
// repository root, as compose.yaml builds it).
func TestDockerIgnore(t *testing.T) {
	t.Parallel()
	lines := map[string]bool{}
	for _, l := range strings.Split(string(readFile(t, "../.dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines[l] = true
		}
	}
	for _, want := range []string{"data/", "bin/", ".git/", "docker/secrets/", "**/admin-token"} {
		require.True(t, lines[want], ".dockerignore must exclude %s", want)
	}
	var c compose
	require.NoError(t, yaml.Unmarshal(readFile(t, "compose.yaml"), &c))
	require.Equal(t, "..", c.Services["muninn"].Build.Context, "the build context is the repository root, where .dockerignore is")
}

type compose struct {
	Services map[string]struct {
		Build struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Volumes     []string          `yaml:"volumes"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// dockerfile is the directives of a Dockerfile's last stage (the image).
type dockerfile struct {
	user, volume, dataDir string
	copies                []string
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	var d dockerfile
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(string(readFile(t, path)), "\\\n", " ")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			d = dockerfile{} // a new stage: only the last one is the image
		case "USER":
			d.user = f[1]
		case "VOLUME":
			d.volume = strings.Trim(strings.Join(f[1:], ""), `[]"`)
		case "ENV":
			for _, kv := range f[1:] {
				if v, ok := strings.CutPrefix(kv, "MUNINN_DATA_DIR="); ok {
					d.dataDir = v
				}
			}
		case "COPY":
			d.copies = append(d.copies, strings.Join(f[1:], " "))
		}
	}
	require.NoError(t, sc.Err())
	return d
}

// TestServerImageOwnsItsVolume: the image runs as nonroot, its data dir is the
// volume, and the volume dir is created in the image owned by that same user,
// so an empty named volume starts owned by it and the first start can write
// the admin token.
func TestServerImageOwnsItsVolume(t *testing.T) {
	t.Parallel()
	d := parseDockerfile(t, "muninn.Dockerfile")
	require.Equal(t, distrolessNonroot, d.user, "USER")
	require.Equal(t, "/var/lib/muninn", d.volume, "VOLUME")
	require.Equal(t, d.volume, d.dataDir, "MUNINN_DATA_DIR is the volume")
	chown := regexp.MustCompile(`^--from=\S+ --chown=(\S+) (\S+) (\S+)$`)
	owned := false
	for _, c := range d.copies {
		if m := chown.FindStringSubmatch(c); m != nil && filepath.Clean(m[3]) == d.volume {
			require.Equal(t, d.user, m[1], "the volume dir's owner is the USER")
			owned = true
		}
	}
	require.True(t, owned, "a COPY --chown=%s creates %s in the image", d.user, d.volume)
	var c compose
	require.NoError(t, yaml.Unmarshal(readFile(t, "compose.yaml"), &c))
	require.Contains(t, c.Services["muninn"].Volumes, "muninn:"+d.volume, "compose mounts its named volume on the data dir")
}

// TestComposeSecretsDocumented: every secret file compose.yaml reads is made
// by the README's Docker section, and the bouncer image runs as root (see its
// header: the only way to hold NET_ADMIN in a container and read the key).
func TestComposeSecretsDocumented(t *testing.T) {
	t.Parallel()
	var c compose
	require.NoError(t, yaml.Unmarshal(readFile(t, "compose.yaml"), &c))
	readme := string(readFile(t, "../README.md"))
	_, docker, ok := strings.Cut(readme, "### Docker\n")
	require.True(t, ok, "README has a Docker section")
	docker, _, _ = strings.Cut(docker, "\n## ")
	require.NotEmpty(t, c.Secrets)
	for name, s := range c.Secrets {
		require.True(t, strings.HasPrefix(s.File, "./secrets/"), "%s: %s", name, s.File)
		require.Contains(t, docker, "> "+strings.TrimPrefix(s.File, "./"), "README's Docker section makes %s", s.File)
	}
	require.Equal(t, "0:0", parseDockerfile(t, "bouncer.Dockerfile").user)
	require.True(t, strings.Contains(docker, "mkdir -m 0700 secrets"))
	_, err := os.Stat("../.dockerignore")
	require.NoError(t, err)
}

// readFile reads a file or fails tb.
func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	return b
}
