package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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

// SentinelOptions configure StartSentinels; zero fields take the defaults.
type SentinelOptions struct {
	Name            string        // monitored master name; default "mymaster"
	Count           int           // sentinel processes; default 3
	Quorum          int           // default 2
	DownAfter       time.Duration // down-after-milliseconds; default 1s
	FailoverTimeout time.Duration // failover-timeout; default 3s
}

// Sentinels is a set of redis-sentinel processes on loopback, all watching
// one primary, stopped when the test ends.
type Sentinels struct {
	tb    testing.TB
	Name  string
	Ports []int
	cmds  []*exec.Cmd
}

// StartSentinels starts o.Count sentinels monitoring primary and waits until
// each answers. Call WaitReady before failing the primary over: sentinels
// need a few seconds to discover the replicas and each other.
func StartSentinels(tb testing.TB, primary *Redis, o SentinelOptions) *Sentinels {
	tb.Helper()
	bin := LookPath(tb, "redis-sentinel")
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
	s := &Sentinels{tb: tb, Name: o.Name}
	tb.Cleanup(s.Kill)
	for range o.Count {
		port := FreePort(tb)
		dir := tb.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		text := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "sentinel.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", o.Name, primary.Port, o.Quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.Name, o.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", o.Name, o.FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", o.Name),
			"",
		}, "\n")
		// Sentinel rewrites its config file, so it must be writable.
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, conf)
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		s.Ports = append(s.Ports, port)
		s.cmds = append(s.cmds, cmd)
	}
	for _, addr := range s.Addrs() {
		WaitForDial(tb, addr, 10*time.Second)
	}
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

// Kill stops every sentinel with SIGKILL.
func (s *Sentinels) Kill() {
	for _, cmd := range s.cmds {
		if cmd.Process != nil {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_, _ = cmd.Process.Wait()
		}
	}
	s.cmds = nil
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

// Info returns one INFO section of the server as key/value pairs.
func (r *Redis) Info(section string) (map[string]string, error) {
	reply, err := Command(r.Addr(), "INFO", section)
	if err != nil {
		return nil, err
	}
	text, ok := reply.(string)
	if !ok {
		return nil, fmt.Errorf("INFO %s: unexpected reply %v", section, reply)
	}
	out := map[string]string{}
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// WaitReplicaSynced waits until r, a replica, reports its link to the
// primary up with the initial sync done.
func (r *Redis) WaitReplicaSynced(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		info, err := r.Info("replication")
		if err == nil && info["role"] == "slave" && info["master_link_status"] == "up" && info["master_sync_in_progress"] == "0" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica %s not synced after %s: %v %v", r.Addr(), timeout, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ErrReply is a RESP error reply.
type ErrReply string

func (e ErrReply) Error() string { return string(e) }

// Command sends one command to addr and reads the whole reply: string for
// simple and bulk strings, int64, nil, []any for arrays, and an ErrReply
// error for an error reply. It does not depend on the code under test.
func Command(addr string, args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, ErrReply(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected RESP line %q", line)
	}
}
