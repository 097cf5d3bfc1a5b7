package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// modulePath identifies the repository root when walking up from the
// working directory.
const modulePath = "github.com/artificialstudio/webhook-dispatcher"

// apiToken is the bearer token every dispatcher process in a run gets.
const apiToken = "bench-token-0123456789abcdef"

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

	redis     *proc
	redisAddr string
	rdb       *redis.Client
	rcv       *receivers
	api       *dproc       // the long-lived `dispatcher api`
	apiClient *http.Client // keep-alive client for the API

	mu    sync.Mutex
	procs map[*proc]struct{}
}

// newEnv builds the binary and starts Redis, the receivers and the API.
func newEnv(ctx context.Context, log io.Writer, extraEnv []string) (e *env, err error) {
	e = &env{log: log, procs: map[*proc]struct{}{}, clkTck: clockTicks(), extraEnv: extraEnv}
	defer func() {
		if err != nil {
			e.close()
			e = nil
		}
	}()
	if e.dir, err = os.MkdirTemp("", "dispatcher-bench-"); err != nil {
		return e, err
	}
	if e.bin, err = buildDispatcher(ctx, e.dir); err != nil {
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
	// PPROF only serves profiles on PPROF_ADDR; it costs nothing unless used.
	if e.api, err = e.startDispatcher(ctx, "api", "PPROF=true"); err != nil {
		return e, err
	}
	return e, nil
}

// close kills every process the run started and removes the temp dir. It is
// safe to call more than once and on a half-built env.
func (e *env) close() {
	e.mu.Lock()
	procs := make([]*proc, 0, len(e.procs))
	for p := range e.procs {
		procs = append(procs, p)
	}
	e.mu.Unlock()
	// Dispatchers first: their open connections release the hanging receiver.
	for _, p := range procs {
		if p != e.redis {
			p.kill()
		}
	}
	if e.redis != nil {
		e.redis.kill()
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
	if e.dir != "" && os.Getenv("BENCH_KEEP_DIR") == "" {
		os.RemoveAll(e.dir)
	}
}

func (e *env) logf(format string, args ...any) {
	if e.log != nil {
		fmt.Fprintf(e.log, format+"\n", args...)
	}
}

// moduleRoot walks up from the working directory to this module's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(raw, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
}

// buildDispatcher builds ./cmd/dispatcher into dir; DISPATCHER_BIN, when set,
// is used instead.
func buildDispatcher(ctx context.Context, dir string) (string, error) {
	if p := os.Getenv("DISPATCHER_BIN"); p != "" {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "dispatcher")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/dispatcher")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dispatcher: %v\n%s", err, b)
	}
	return out, nil
}

// proc is one child process; its stdout and stderr go to a file in the temp dir.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
	owner   *env
}

// start runs bin with args and env (nil env inherits nothing but what is given).
func (e *env) start(name, bin string, args, environ []string) (*proc, error) {
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own copy
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr() // own process group; killed if the bench dies
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{}), owner: e}
	e.mu.Lock()
	e.procs[p] = struct{}{}
	e.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process (by its pid) and waits up to 10 s for it.
func (p *proc) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	p.owner.mu.Lock()
	delete(p.owner.procs, p)
	p.owner.mu.Unlock()
}

// tail returns the last n bytes the process printed.
func (p *proc) tail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, st.Size()-n)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(b)
}

// failure wraps err with the process's recent output.
func (p *proc) failure(err error) error {
	state := "running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	return fmt.Errorf("%s (%s): %w\n--- %s output (tail) ---\n%s", p.name, state, err, p.name, p.tail(3000))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (e *env) startRedis(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found on PATH: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.dir, "redis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	e.redisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p, err := e.start("redis", bin, []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
	}, []string{"PATH=" + os.Getenv("PATH")})
	if err != nil {
		return err
	}
	e.redis = p
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redisAddr, PoolSize: 64})
	deadline := time.Now().Add(15 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := e.rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.exited() || time.Now().After(deadline) {
			return p.failure(fmt.Errorf("not answering PING: %w", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// dproc is a running dispatcher process.
type dproc struct {
	*proc
	apiURL, metricsURL string
	pprofURL           string // served only with PPROF=true
}

// startDispatcher runs `dispatcher mode` against the run's Redis and
// receivers, with extra KEY=VALUE settings, and waits for /healthz.
func (e *env) startDispatcher(ctx context.Context, mode string, extra ...string) (*dproc, error) {
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	pprofPort, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &dproc{
		apiURL:     "http://127.0.0.1:" + strconv.Itoa(apiPort),
		metricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort),
		pprofURL:   "http://127.0.0.1:" + strconv.Itoa(pprofPort),
	}
	environ := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"REDIS_URL=" + e.redisURL(),
		"API_ADDR=127.0.0.1:" + strconv.Itoa(apiPort),
		"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(metricsPort),
		"PPROF_ADDR=127.0.0.1:" + strconv.Itoa(pprofPort),
		"API_TOKEN=" + apiToken,
		"URLGUARD_ALLOW_CIDRS=127.0.0.1/32",
		"WEBHOOK_CA_FILE=" + e.rcv.caFile,
	}, append(append([]string(nil), e.extraEnv...), extra...)...)
	e.mu.Lock()
	name := fmt.Sprintf("dispatcher-%s-%d", mode, len(e.procs))
	e.mu.Unlock()
	if d.proc, err = e.start(name, e.bin, []string{mode}, environ); err != nil {
		return nil, err
	}
	health := d.metricsURL + "/healthz"
	if mode != "worker" {
		health = d.apiURL + "/healthz"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ctx.Err() != nil {
			d.kill()
			return nil, ctx.Err()
		}
		if d.exited() {
			return nil, d.failure(errors.New("exited at start"))
		}
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			d.kill()
			return nil, d.failure(fmt.Errorf("not healthy after 30s: %v", err))
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	e.mu.Lock()
	live := make([]int, 0, len(e.procs))
	for p := range e.procs {
		live = append(live, p.pid())
	}
	e.mu.Unlock()
	for _, pid := range live {
		if c, err := e.cpuSeconds(pid); err == nil {
			own += c
		}
	}
	return own, nil
}

// peakRSS is VmHWM of pid in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM: %w", err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
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
