package worker_test

import (
	"os"
	"testing"
	"time"

	"github.com/muninn/muninn/server/alert"
)

// TestMain bounds http.DefaultClient as muninn's main does (with a
// shorter bound, so the hanging-receiver test ends sooner).
func TestMain(m *testing.M) {
	alert.BoundDefaultClient(2 * time.Second)
	os.Exit(m.Run())
}
