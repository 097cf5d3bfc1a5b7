// Package testenv starts the real things that integration tests and the benchmark need —
// redis-server (alone, replicated, behind Sentinel, or as a Redis Cluster), Prometheus and
// promtool, HTTPS receivers and the built dispatcher binary — on loopback only, and stops
// them again.
//
// Every piece has an error-returning core that needs no testing.TB (NewRedis, NewCluster,
// NewDispatcher, BuildBinary, FindFreePort…), which the benchmark uses, and a thin wrapper
// that takes a testing.TB (StartRedis, StartCluster, StartDispatcher, Binary, FreePort…),
// which tests use: the wrapper calls tb.Helper, fails the test on error and stops what it
// started in tb.Cleanup. A wrapper whose binary is not on PATH skips the test, except
// under CI=true, where a missing binary is a failure, not a silent skip.
//
// Test packages that use Binary (or StartDispatcher) should run through Main, so the
// binary built for them is removed when they end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// modulePath identifies the repository's go.mod.
const modulePath = "github.com/artificialstudio/webhook-dispatcher"

// LookPath returns the path of bin. Without it the test is skipped, except under CI=true,
// where a missing binary is a failure, not a silent skip.
func LookPath(tb testing.TB, bin string) string {
	tb.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s not found on PATH (CI must install it): %v", bin, err)
		}
		tb.Skipf("%s not found on PATH: %v", bin, err)
	}
	return path
}

// FindFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FindFreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort is FindFreePort failing tb on error.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := FindFreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// waitDial waits until addr accepts TCP connections, up to timeout or the end of ctx.
func waitDial(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %s: %w", addr, timeout, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// WaitForDial waits until addr accepts TCP connections, failing tb after timeout.
func WaitForDial(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	if err := waitDial(context.Background(), addr, timeout); err != nil {
		tb.Fatal(err)
	}
}

// FindModuleRoot returns the repository root (the folder holding this module's go.mod):
// the one this source file was compiled from, or else the nearest above the working
// directory.
func FindModuleRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Join(filepath.Dir(file), "..", ".."); isModuleRoot(dir) {
			return filepath.Clean(dir), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above %s", modulePath, dir)
		}
		dir = parent
	}
}

func isModuleRoot(dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.HasPrefix(raw, []byte("module "+modulePath+"\n"))
}

// ModuleRoot is FindModuleRoot failing tb on error.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	root, err := FindModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// Ctx returns a context that ends with the test or after d.
func Ctx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// ownDir returns dir, or a new temp dir (and true) when dir is empty; the caller that
// created it removes it.
func ownDir(dir, pattern string) (string, bool, error) {
	if dir != "" {
		return dir, false, os.MkdirAll(dir, 0o700)
	}
	dir, err := os.MkdirTemp("", pattern)
	return dir, err == nil, err
}

// sleep waits d, or returns ctx's error once it ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// giveUp marks an error of a poll's ready func as final: polling again cannot help.
type giveUp struct{ error }

func (g giveUp) Unwrap() error { return g.error }

// poll calls ready every interval until it reports done, returns a giveUp error, timeout
// passes (the error then includes ready's last error) or ctx ends.
func poll(ctx context.Context, timeout, interval time.Duration, ready func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := ready()
		if ok {
			return nil
		}
		if g, final := err.(giveUp); final {
			return g.error
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("not ready")
			}
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		if err := sleep(ctx, interval); err != nil {
			return err
		}
	}
}
