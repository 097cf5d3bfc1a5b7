package test

import (
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestMain removes the dispatcher binary testenv builds for these tests once they end.
func TestMain(m *testing.M) { testenv.Main(m) }
