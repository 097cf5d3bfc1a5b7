package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelOptions configure NewSentinels; zero fields take the defaults.
type SentinelOptions struct {
	Name            string        // monitored master name; default "mymaster"
	Count           int           // sentinel processes; default 3
	Quorum          int           // default 2
	DownAfter       time.Duration // down-after-milliseconds; default 1s
	FailoverTimeout time.Duration // failover-timeout; default 3s
	// Dir holds one folder per sentinel (its config, which it rewrites, and its log);
	// empty means a new temp dir, which Kill removes. StartSentinels uses a tb.TempDir.
	Dir string
}

// Sentinels is a set of redis-sentinel processes on loopback, all watching one primary.
type Sentinels struct {
	Name  string
	Ports []int

	dir    string
	ownDir bool
	procs  []*Proc
}

// NewSentinels starts o.Count sentinels (redis-sentinel, found on PATH) monitoring
// primary and waits until each accepts connections. Call WaitReady before failing the
// primary over: sentinels need a few seconds to discover the replicas and each other.
// Kill stops them.
func NewSentinels(ctx context.Context, primary *Redis, o SentinelOptions) (s *Sentinels, err error) {
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "mymaster"
	}
	if o.Count == 0 {
		o.Count = 3
	}
	if o.Quorum == 0 {
		o.Quorum = 2
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout == 0 {
		o.FailoverTimeout = 3 * time.Second
	}
	s = &Sentinels{Name: o.Name}
	if s.dir, s.ownDir, err = ownDir(o.Dir, "sentinels-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Kill()
		}
	}()
	for i := range o.Count {
		port, err := FindFreePort()
		if err != nil {
			return s, err
		}
		dir := filepath.Join(s.dir, "sentinel-"+strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return s, err
		}
		conf := filepath.Join(dir, "sentinel.conf")
		text := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + dir,
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", o.Name, primary.Port, o.Quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.Name, o.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", o.Name, o.FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", o.Name),
			"",
		}, "\n")
		// Sentinel rewrites its config file, so it must be writable.
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return s, err
		}
		p, err := StartProc(exec.Command(bin, conf), filepath.Join(dir, "sentinel.log"))
		if err != nil {
			return s, err
		}
		s.Ports = append(s.Ports, port)
		s.procs = append(s.procs, p)
	}
	for i, addr := range s.Addrs() {
		if err := waitDial(ctx, addr, 10*time.Second); err != nil {
			return s, s.procs[i].Failure(err)
		}
	}
	return s, nil
}

// StartSentinels is NewSentinels in a tb.TempDir, stopped when the test ends. It skips
// without redis-sentinel unless CI=true.
func StartSentinels(tb testing.TB, primary *Redis, o SentinelOptions) *Sentinels {
	tb.Helper()
	LookPath(tb, "redis-sentinel")
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	s, err := NewSentinels(context.Background(), primary, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Kill)
	return s
}

// Addrs are the sentinels' host:port addresses.
func (s *Sentinels) Addrs() []string {
	out := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out
}

// URL is the REDIS_URL for a dispatcher that finds the primary through these
// sentinels, in asynq.ParseRedisURI's syntax.
func (s *Sentinels) URL() string {
	return "redis-sentinel://" + strings.Join(s.Addrs(), ",") + "?master=" + s.Name
}

// Kill stops every sentinel with SIGKILL, and removes their folders if NewSentinels
// created them.
func (s *Sentinels) Kill() {
	for _, p := range s.procs {
		p.Kill()
	}
	s.procs = nil
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

// MasterAddrs asks every sentinel for the primary's address; an entry is ""
// when that sentinel did not answer.
func (s *Sentinels) MasterAddrs() []string {
	out := make([]string, len(s.Ports))
	for i, addr := range s.Addrs() {
		reply, err := Command(addr, "SENTINEL", "get-master-addr-by-name", s.Name)
		if hp, ok := reply.([]any); err == nil && ok && len(hp) == 2 {
			host, _ := hp[0].(string)
			port, _ := hp[1].(string)
			out[i] = net.JoinHostPort(host, port)
		}
	}
	return out
}

// WaitMaster waits until every sentinel names addr as the primary and returns
// how long that took.
func (s *Sentinels) WaitMaster(tb testing.TB, addr string, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		agree := true
		got := s.MasterAddrs()
		for _, a := range got {
			agree = agree && a == addr
		}
		if agree {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			tb.Fatalf("sentinels name %v as primary, want %s within %s", got, addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitFailover waits until every sentinel names the same primary, other than
// from, and returns it and how long that took.
func (s *Sentinels) WaitFailover(tb testing.TB, from string, timeout time.Duration) (string, time.Duration) {
	tb.Helper()
	start := time.Now()
	for {
		got := s.MasterAddrs()
		agree := got[0] != "" && got[0] != from
		for _, a := range got {
			agree = agree && a == got[0]
		}
		if agree {
			return got[0], time.Since(start)
		}
		if time.Since(start) > timeout {
			tb.Fatalf("sentinels name %v as primary, want one other than %s within %s", got, from, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitReady waits until every sentinel knows replicas replicas and all the
// other sentinels, which a failover needs (the vote counts known sentinels).
func (s *Sentinels) WaitReady(tb testing.TB, replicas int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ready := true
		var why string
		for _, addr := range s.Addrs() {
			r, err1 := Command(addr, "SENTINEL", "replicas", s.Name)
			o, err2 := Command(addr, "SENTINEL", "sentinels", s.Name)
			rs, _ := r.([]any)
			peers, _ := o.([]any)
			if err1 != nil || err2 != nil || len(rs) < replicas || len(peers) < len(s.Ports)-1 {
				ready = false
				why = fmt.Sprintf("sentinel %s knows %d replicas, %d other sentinels (%v %v)", addr, len(rs), len(peers), err1, err2)
				break
			}
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sentinels not ready after %s: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
