package testenv

import (
	"context"
	"errors"
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

// Bounds on a redis-server start: accepting connections, then answering PING (an AOF is
// loaded in between).
const (
	redisDialTimeout  = 10 * time.Second
	redisReadyTimeout = 20 * time.Second
	startTries        = 3 // new free port after "address already in use"
)

// Redis is a redis-server process on a loopback port. Its methods are not safe for
// concurrent use.
type Redis struct {
	Port int
	Dir  string // data directory; redis.log holds the server's output

	bin    string
	args   []string // without --port
	ownDir bool     // Dir is ours to remove on Close
	proc   *Proc    // nil while stopped
	paused bool
}

// RedisOptions configure NewRedis and StartRedis.
type RedisOptions struct {
	// AOF turns on appendonly with appendfsync everysec in Dir.
	AOF bool
	// Extra are more redis-server arguments, e.g. "--replicaof", "127.0.0.1", "6379".
	Extra []string
	// Dir is the data directory; empty means a new temp dir, which Close removes.
	// StartRedis uses a tb.TempDir.
	Dir string
}

// NewRedis runs redis-server (found on PATH) on a free 127.0.0.1 port without RDB
// snapshots, and waits until it answers PING. Close stops it.
func NewRedis(ctx context.Context, o RedisOptions) (r *Redis, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	dir, own, err := ownDir(o.Dir, "redis-")
	if err != nil {
		return nil, err
	}
	r = &Redis{Dir: dir, bin: bin, ownDir: own}
	r.args = []string{"--bind", "127.0.0.1", "--dir", r.Dir, "--save", "", "--protected-mode", "no",
		"--daemonize", "no"}
	if o.AOF {
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		r.args = append(r.args, "--appendonly", "no")
	}
	r.args = append(r.args, o.Extra...)
	for try := 1; ; try++ {
		if r.Port, err = FindFreePort(); err == nil {
			err = r.Restart(ctx)
		}
		if err == nil {
			return r, nil
		}
		// Another process may have taken the port between FindFreePort and redis'
		// listen; a fresh port fixes that, nothing else would.
		if try == startTries || !strings.Contains(err.Error(), "Address already in use") {
			r.Close()
			return nil, err
		}
	}
}

// StartRedis is NewRedis in a tb.TempDir, stopped when the test ends. It skips without
// redis-server unless CI=true.
func StartRedis(tb testing.TB, o RedisOptions) *Redis {
	tb.Helper()
	LookPath(tb, "redis-server")
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	r, err := NewRedis(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return r
}

// Addr is host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// URL is the redis:// URI of database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Restart starts the stopped server again on the same port and data directory (so it
// reloads its AOF, or its nodes.conf in a cluster) and waits until it answers PING.
func (r *Redis) Restart(ctx context.Context) error {
	if r.proc != nil {
		return fmt.Errorf("redis on %s is already running", r.Addr())
	}
	args := append([]string{"--port", strconv.Itoa(r.Port)}, r.args...)
	p, err := StartProc(exec.Command(r.bin, args...), filepath.Join(r.Dir, "redis.log"))
	if err != nil {
		return err
	}
	r.proc, r.paused = p, false
	err = poll(ctx, redisDialTimeout+redisReadyTimeout, 20*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, giveUp{errors.New("exited")}
		}
		reply, err := Command(r.Addr(), "PING")
		return reply == "PONG", err
	})
	if err != nil {
		err = p.Failure(fmt.Errorf("redis on %s not ready: %w", r.Addr(), err))
		r.Kill()
	}
	return err
}

// Start is Restart failing tb on error.
func (r *Redis) Start(tb testing.TB) {
	tb.Helper()
	if err := r.Restart(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// Kill stops the server with SIGKILL: no shutdown save, like a crash. A stopped server
// is left alone.
func (r *Redis) Kill() {
	r.proc.Kill()
	r.proc, r.paused = nil, false
}

// Close kills the server and removes Dir if NewRedis created it.
func (r *Redis) Close() {
	r.Kill()
	if r.ownDir {
		os.RemoveAll(r.Dir)
	}
}

// PID is the redis-server process id, 0 while it is stopped.
func (r *Redis) PID() int {
	if r.proc == nil {
		return 0
	}
	return r.proc.PID()
}

// Signal sends sig to redis-server.
func (r *Redis) Signal(sig os.Signal) error {
	if r.proc == nil {
		return errors.New("redis is not running")
	}
	return r.proc.Signal(sig)
}

// Pause freezes the server with SIGSTOP. A stopped process still accepts TCP connections
// (the kernel does), so clients hang rather than fail fast, as with a stalled host.
func (r *Redis) Pause() error {
	err := r.Signal(syscall.SIGSTOP)
	r.paused = r.paused || err == nil
	return err
}

// Resume undoes Pause with SIGCONT.
func (r *Redis) Resume() error {
	err := r.Signal(syscall.SIGCONT)
	r.paused = r.paused && err != nil
	return err
}

// Running reports whether the server is started and not paused.
func (r *Redis) Running() bool { return r.proc != nil && !r.paused }

// Logs returns what the server printed (redis.log in Dir), over every restart.
func (r *Redis) Logs() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	return string(b)
}

// Do runs one command through Command, for set-up and checks that must not depend on
// the code under test.
func (r *Redis) Do(args ...string) (any, error) { return Command(r.Addr(), args...) }

// Info returns one INFO section of the server as key/value pairs.
func (r *Redis) Info(section string) (map[string]string, error) {
	text, err := commandString(r.Addr(), "INFO", section)
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// WaitReplicaSynced waits until r, a replica, reports its link to the primary up with
// the initial sync done, failing tb after timeout.
func (r *Redis) WaitReplicaSynced(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	var info map[string]string
	err := poll(context.Background(), timeout, 50*time.Millisecond, func() (bool, error) {
		var err error
		info, err = r.Info("replication")
		return err == nil && info["role"] == "slave" && info["master_link_status"] == "up" &&
			info["master_sync_in_progress"] == "0", err
	})
	if err != nil {
		tb.Fatalf("replica %s not synced: %v: %v", r.Addr(), err, info)
	}
}
