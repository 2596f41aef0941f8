// Package e2e holds end-to-end tests of muninn: a real server (HTTP API, render hub,
// PostgreSQL) and real bouncers enforcing its rulesets with nftables inside network
// namespaces the tests create, probed by TCP connects from a client namespace. They
// need root (CI is root) and skip otherwise. The package has no code of its own.
//
// TestTour needs no root: it walks the README's API tour with ogenclient, a client
// that a second generator (ogen) builds from the same openapi/openapi.yaml.
//
// TestKernelEqualsRenderRandom makes random changes through the API and reads the
// bouncer's kernel sets back after each round: they equal the render it applied. Its
// log names the seed; -e2e.seed replays a run.
package e2e
