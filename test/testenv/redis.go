// Package testenv starts the real processes that integration tests and the
// benchmark need — redis-server, redis-sentinel, the dispatcher binary and
// HTTPS receivers — on loopback only, and stops them when the test ends.
package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LookPath returns the path of bin. Without it the test is skipped, except
// under CI=true, where a missing binary is a failure, not a silent skip.
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitForDial waits until addr accepts TCP connections.
func WaitForDial(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not accepting connections after %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis is a redis-server process that the test owns.
type Redis struct {
	tb   testing.TB
	bin  string
	Port int
	Dir  string
	args []string
	cmd  *exec.Cmd
}

// RedisOptions configure StartRedis.
type RedisOptions struct {
	// AOF turns on appendonly with appendfsync everysec in Dir.
	AOF bool
	// Extra are more redis-server arguments, e.g. "--replicaof", "127.0.0.1", "6379".
	Extra []string
}

// StartRedis runs a throwaway redis-server on a free loopback port until the
// test ends.
func StartRedis(tb testing.TB, o RedisOptions) *Redis {
	tb.Helper()
	r := &Redis{tb: tb, bin: LookPath(tb, "redis-server"), Port: FreePort(tb), Dir: tb.TempDir()}
	r.args = []string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.Dir,
		"--save", "", "--protected-mode", "no", "--daemonize", "no", "--logfile", filepath.Join(r.Dir, "redis.log")}
	if o.AOF {
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		r.args = append(r.args, "--appendonly", "no")
	}
	r.args = append(r.args, o.Extra...)
	tb.Cleanup(r.Kill) // before Start, so a start that fails half-way still stops the process
	r.Start()
	return r
}

// Addr is host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// URL is the redis:// URI of database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start (re)starts the server on the same port and data directory.
func (r *Redis) Start() {
	r.tb.Helper()
	cmd := exec.Command(r.bin, r.args...)
	if err := cmd.Start(); err != nil {
		r.tb.Fatal(err)
	}
	r.cmd = cmd
	WaitForDial(r.tb, r.Addr(), 10*time.Second)
	// Accepting connections is not yet loaded: wait for the AOF to be read.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := r.command("PING")
		if err == nil && strings.HasPrefix(out, "+PONG") {
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("redis on %s not ready: %q %v", r.Addr(), out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL: no shutdown save, like a crash.
func (r *Redis) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = r.cmd.Process.Wait()
	r.cmd = nil
}

// Do runs one command through a raw RESP connection and returns the first
// reply line, for test set-up that must not depend on the code under test.
func (r *Redis) Do(args ...string) (string, error) { return r.command(args...) }

func (r *Redis) command(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Ctx returns a context that ends with the test or after d.
func Ctx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
