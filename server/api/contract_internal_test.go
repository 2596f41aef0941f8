package api

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/server/api/apigen"
)

// TestPathOnlySkipsOnlyValidationThatCannotFail: the middleware skips the
// contract's request validation for an operation's request only when its
// path values are within PathOnly's bounds; for random path values of every
// such operation, whenever it would skip, the full validation passes too.
func TestPathOnlySkipsOnlyValidationThatCannotFail(t *testing.T) {
	t.Parallel()
	spec, err := apigen.GetSwagger()
	require.NoError(t, err)
	ops, err := Operations(spec)
	require.NoError(t, err)
	require.NotNil(t, ops["GET /ips/{address}"].PathOnly, "the hot path skips validation")
	require.Nil(t, ops["PUT /ips/{address}/override"].PathOnly, "a body is always validated")
	require.Nil(t, ops["GET /networks/{address}/{bits}"].PathOnly, "an integer parameter is always validated")
	alphabet := []rune("az09.:-_%é€😀 /")
	r := rand.New(rand.NewPCG(7, 11))
	skipped, checked := 0, 0
	for key, op := range ops {
		if op.PathOnly == nil {
			continue
		}
		method, path, _ := strings.Cut(key, " ")
		for range 200 {
			params := map[string]string{}
			filled := path
			for _, b := range op.PathOnly {
				var sb strings.Builder
				for range r.IntN(int(max(b.max, 8)) + 8) {
					sb.WriteRune(alphabet[r.IntN(len(alphabet))])
				}
				params[b.name] = sb.String()
				filled = strings.ReplaceAll(filled, "{"+b.name+"}", url.PathEscape(sb.String()))
			}
			req := httptest.NewRequest(method, "/api/v1"+filled, nil)
			full := openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
				Request: req, PathParams: params, Route: op.Route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
			})
			if op.pathValid(params) {
				skipped++
				require.NoError(t, full, "%s with %q: skipped, but the contract refuses it", key, params)
			}
			checked++
		}
	}
	require.Positive(t, skipped)
	require.Less(t, skipped, checked, "some values are out of bounds and validated in full")
}

// A client that goes away while its credential is checked is routine, not
// an error worth a person's attention (the fan-out harness saw one per
// disconnect).
func TestCredentialErrorOfAGoneClientIsDebug(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	logCredentialError(gone, log, "Could not check a bouncer key.", context.Canceled)
	logCredentialError(context.Background(), log, "Could not check a token.", errors.New("connection refused"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `level=DEBUG msg="Could not check a bouncer key." error="context canceled"`)
	require.Contains(t, lines[1], `level=ERROR msg="Could not check a token." error="connection refused"`)
}
