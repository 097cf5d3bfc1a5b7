package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// queue is the asynq queue the dispatcher uses (dispatcher.DefaultQueue); the
// bare baseline uses the same name so its keys have the same shape.
const queue = "webhooks"

// env owns everything a run starts: a temp dir, the dispatcher binary, one
// redis-server, the receivers and any dispatcher processes. close ends them all.
type env struct {
	extraEnv []string // Options.Env, given to every dispatcher process
	dir      string
	bin      string
	log      io.Writer // progress lines
	clkTck   float64

	redis     *testenv.Redis
	redisAddr string
	rdb       *redis.Client
	rcv       *receivers
	api       *testenv.Dispatcher // the long-lived `dispatcher api`
	apiClient *http.Client        // keep-alive client for the API

	mu          sync.Mutex
	dispatchers []*testenv.Dispatcher // every one started, exited or not
}

// newEnv builds the binary and starts Redis, the receivers and the API.
func newEnv(ctx context.Context, log io.Writer, extraEnv []string) (e *env, err error) {
	e = &env{log: log, clkTck: clockTicks(), extraEnv: extraEnv}
	defer func() {
		if err != nil {
			e.close()
			e = nil
		}
	}()
	if e.dir, err = os.MkdirTemp("", "dispatcher-bench-"); err != nil {
		return e, err
	}
	if e.bin, err = testenv.BuildBinary(ctx); err != nil {
		return e, err
	}
	if err = e.startRedis(ctx); err != nil {
		return e, err
	}
	if e.rcv, err = newReceivers(e.dir, healthyDestinations); err != nil {
		return e, err
	}
	e.apiClient = &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
	// PPROF only adds routes on the metrics port; it costs nothing unless used.
	if e.api, err = e.startDispatcher(ctx, "api", "PPROF=true"); err != nil {
		return e, err
	}
	return e, nil
}

// close kills every process the run started and removes the temp dir and the
// binary. It is safe to call more than once and on a half-built env.
func (e *env) close() {
	e.mu.Lock()
	dispatchers := e.dispatchers
	e.mu.Unlock()
	// Dispatchers first: their open connections release the hanging receiver.
	for _, d := range dispatchers {
		d.Kill()
	}
	if e.redis != nil {
		e.redis.Close()
	}
	if e.rdb != nil {
		e.rdb.Close()
	}
	if e.rcv != nil {
		e.rcv.close()
	}
	if e.apiClient != nil {
		e.apiClient.CloseIdleConnections()
	}
	testenv.RemoveBinary()
	if e.dir != "" && os.Getenv("BENCH_KEEP_DIR") == "" {
		os.RemoveAll(e.dir)
	}
}

func (e *env) logf(format string, args ...any) {
	if e.log != nil {
		fmt.Fprintf(e.log, format+"\n", args...)
	}
}

func (e *env) startRedis(ctx context.Context) (err error) {
	e.redis, err = testenv.NewRedis(ctx, testenv.RedisOptions{Dir: filepath.Join(e.dir, "redis")})
	if err != nil {
		return err
	}
	e.redisAddr = e.redis.Addr()
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redisAddr, PoolSize: 64})
	return nil
}

func (e *env) redisURL() string { return "redis://" + e.redisAddr + "/0" }

// flush empties Redis between scenarios and re-registers the queue name that
// asynq clients cache as published.
func (e *env) flush(ctx context.Context) error {
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("flushall: %w", err)
	}
	return e.rdb.SAdd(ctx, "asynq:queues", queue).Err()
}

func (e *env) pause(ctx context.Context) error {
	return e.rdb.Set(ctx, "asynq:{"+queue+"}:paused", time.Now().Unix(), 0).Err()
}

func (e *env) unpause(ctx context.Context) error {
	return e.rdb.Del(ctx, "asynq:{"+queue+"}:paused").Err()
}

// queueCounts reads the queue's pending, active and retry sizes straight
// from asynq's keys.
func (e *env) queueCounts(ctx context.Context) (pending, active, retry int64, err error) {
	p := e.rdb.Pipeline()
	pc := p.LLen(ctx, "asynq:{"+queue+"}:pending")
	ac := p.LLen(ctx, "asynq:{"+queue+"}:active")
	rc := p.ZCard(ctx, "asynq:{"+queue+"}:retry")
	if _, err := p.Exec(ctx); err != nil {
		return 0, 0, 0, err
	}
	return pc.Val(), ac.Val(), rc.Val(), nil
}

// dataMemory is INFO used_memory minus the client buffers: what the keys take.
func (e *env) dataMemory(ctx context.Context) (int64, error) {
	info, err := e.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	fields := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			fields[k] = n
		}
	}
	used, ok := fields["used_memory"]
	if !ok {
		return 0, errors.New("INFO memory has no used_memory")
	}
	return used - fields["mem_clients_normal"], nil
}

// startDispatcher runs `dispatcher mode` against the run's Redis and
// receivers, with extra KEY=VALUE settings, and waits for /healthz.
func (e *env) startDispatcher(ctx context.Context, mode string, extra ...string) (*testenv.Dispatcher, error) {
	env := append([]string{"REDIS_URL=" + e.redisURL(), "WEBHOOK_CA_FILE=" + e.rcv.caFile}, e.extraEnv...)
	d, err := testenv.NewDispatcher(ctx, testenv.DispatcherOptions{
		Bin:  e.bin,
		Mode: mode,
		Env:  append(env, extra...),
		Dir:  e.dir,
	})
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.dispatchers = append(e.dispatchers, d)
	e.mu.Unlock()
	return d, nil
}

// cpuSeconds is utime+stime of pid from /proc/PID/stat.
func (e *env) cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return (ut + st) / e.clkTck, nil
}

// machineBusy is the CPU seconds all processes have used (/proc/stat).
func (e *env) machineBusy() (float64, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: unexpected format")
	}
	var busy float64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return busy / e.clkTck, nil
}

// ownCPU is the CPU seconds of this process, its reaped children (every
// dispatcher killed so far) and its live children.
func (e *env) ownCPU() (float64, error) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(raw, ')')
	f := strings.Fields(string(raw[i+1:]))
	if i < 0 || len(f) < 15 {
		return 0, errors.New("/proc/self/stat: unexpected format")
	}
	var own float64
	for _, v := range f[11:15] { // utime, stime, cutime, cstime
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, err
		}
		own += n
	}
	own /= e.clkTck
	var live []int
	if pid := e.redis.PID(); pid != 0 {
		live = append(live, pid)
	}
	e.mu.Lock()
	for _, d := range e.dispatchers {
		if !d.Exited() {
			live = append(live, d.PID())
		}
	}
	e.mu.Unlock()
	for _, pid := range live {
		if c, err := e.cpuSeconds(pid); err == nil {
			own += c
		}
	}
	return own, nil
}

// clockTicks is sysconf(_SC_CLK_TCK) via getconf; 100 when that fails.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}
