// Package test holds the integration tests: the built binary or the real
// worker against real redis-server, redis-sentinel, Redis Cluster and
// Prometheus processes and TLS receivers on loopback, started, killed and
// restarted by the tests (test support lives in test/testenv). It tests
// through the public surfaces only and changes no production code.
package test

import (
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestMain removes the dispatcher binary testenv builds for these tests once they end.
func TestMain(m *testing.M) { testenv.Main(m) }
