package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// pool runs tasks through h on a fixed number of worker goroutines, as an
// asynq server does: a deferred task comes back after its booked delay
// without spending an attempt, and every other result ends the task.
type pool struct {
	h     *Handler
	jobs  chan job
	wg    sync.WaitGroup // workers
	tasks sync.WaitGroup // tasks not yet ended
	until time.Time      // no deferral comes back after this
}

type job struct {
	task *asynq.Task
	done func(error)
}

func newPool(h *Handler, workers int, until time.Time) *pool {
	p := &pool{h: h, jobs: make(chan job, 4096), until: until}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range p.jobs {
				p.run(j)
			}
		}()
	}
	return p
}

func (p *pool) run(j job) {
	err := p.h.ProcessTask(context.Background(), j.task)
	var de *dispatcher.DeferError
	if errors.As(err, &de) && time.Now().Add(de.Delay).Before(p.until) {
		time.AfterFunc(de.Delay, func() { p.jobs <- j })
		return
	}
	if j.done != nil {
		j.done(err)
	}
	p.tasks.Done()
}

func (p *pool) submit(t *asynq.Task, done func(error)) {
	p.tasks.Add(1)
	p.jobs <- job{task: t, done: done}
}

// close waits for every submitted task to end and stops the workers.
func (p *pool) close() {
	p.tasks.Wait()
	close(p.jobs)
	p.wg.Wait()
}

// TestHostileReceiverLoad: 100 webhooks to a receiver that answers in the
// hostile shapes of TestHostileAnswersEndWithinTimeout, while another
// customer's healthy receiver gets a steady stream. The healthy customer's
// p99 latency (submit to attempt done) stays within 2x of a quiet run
// measured in the same test, and the worker's goroutines and descriptors come
// back to their quiet level. Production defaults: 100 workers, 20 slots per
// destination; DELIVERY_TIMEOUT scaled down to 2 s. The hostile webhooks are
// spread over the healthy stream (one every third healthy one): the hostile
// receiver runs in this process, so a burst of 100 fresh TLS handshakes and
// endless bodies would be charged to the worker's CPU twice over.
func TestHostileReceiverLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		workers   = 100
		hostCap   = 20
		hostile   = 100
		healthy   = 300
		interval  = 10 * time.Millisecond
		timeout   = 2 * time.Second
		quietSlop = 25 * time.Millisecond // floor under a sub-ms quiet p99 on a shared machine
	)
	var shape atomic.Int64
	bad := newRawReceiver(t, func(r *rawReceiver, c net.Conn) {
		s := hostileAnswers[int(shape.Add(1))%len(hostileAnswers)]
		if s.handOff {
			s.answer(c)
			return
		}
		tc, _, _, err := r.readRequest(c)
		if err != nil {
			return
		}
		s.answer(tc)
	})
	good, _ := tlsReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	roots := good.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	// httptest's one test certificate serves both receivers.
	client := NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: roots, Concurrency: workers})
	h := &Handler{Client: client, Timeout: timeout, Limiter: limiter.NewLocal(hostCap)}

	// run sends the healthy stream (with the hostile webhooks if attack) and
	// returns the healthy latencies, sorted.
	run := func(name string, attack bool) []time.Duration {
		p := newPool(h, workers, time.Now().Add(60*time.Second))
		var mu sync.Mutex
		var lat []time.Duration
		var failed atomic.Int64
		for i := range healthy {
			if attack && i%(healthy/hostile) == 0 {
				p.submit(testTask(t, name+"-bad-"+strconv.Itoa(i), bad.URL), nil)
			}
			start := time.Now()
			task := testTask(t, name+"-good-"+strconv.Itoa(i), good.URL+"/hook")
			p.submit(task, func(err error) {
				if err != nil {
					failed.Add(1)
				}
				mu.Lock()
				lat = append(lat, time.Since(start))
				mu.Unlock()
			})
			time.Sleep(interval)
		}
		p.close()
		if failed.Load() != 0 {
			t.Errorf("%s: %d healthy deliveries failed", name, failed.Load())
		}
		slices.Sort(lat)
		return lat
	}
	p := func(lat []time.Duration, q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }

	run("warm", false)
	client.CloseIdleConnections()
	quietG, quietFD := runtime.NumGoroutine(), openFDs(t)
	quiet1 := run("quiet1", false)
	attackStart := time.Now()
	attacked := run("attack", true)
	attackTook := time.Since(attackStart)
	quiet2 := run("quiet2", false)
	quiet := max(p(quiet1, 0.99), p(quiet2, 0.99), quietSlop)
	t.Logf("healthy p50/p99: quiet %s/%s and %s/%s; under attack %s/%s (attack run %s)",
		p(quiet1, 0.5), p(quiet1, 0.99), p(quiet2, 0.5), p(quiet2, 0.99), p(attacked, 0.5), p(attacked, 0.99), attackTook.Round(time.Millisecond))
	// Under the race detector the in-process hostile receiver's CPU (TLS,
	// endless bodies) costs several times more and competes with the worker's:
	// the ratio is then logged, not judged. The leak checks below still run.
	if got := p(attacked, 0.99); got > 2*quiet && !raceEnabled {
		t.Errorf("healthy p99 under attack %s, want at most 2x the quiet %s", got, quiet)
	}
	client.CloseIdleConnections()
	waitQuiet(t, quietG, quietFD, 15*time.Second)
}
