package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/worker"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// TestCapCountsDestinationsNotSpellings: 300 webhooks to one slow server,
// written 15 ways (case, trailing dot, subdomains of one registrable domain,
// paths and queries), all resolving to one address through a resolver the
// test controls, take at most HOST_CONCURRENCY (20) of the worker's 100 slots;
// another customer's webhooks, sent at a steady rate meanwhile, arrive about
// as fast as in a quiet run. Before destinations were keyed by
// urlguard.DestinationKey each spelling had its own 20 slots: the slow server
// took all 100 and the other customer's p50 went from 13 ms to 12.5 s.
//
// It runs the real worker (asynq.Server, worker.Handler, limiter.Local) in
// process against a real redis-server, so the worker's client can use the
// test's resolver.
func TestCapCountsDestinationsNotSpellings(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const capPerDestination = 20
	var inFlight, maxInFlight atomic.Int64
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		time.Sleep(1500 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	}))
	defer slow.Close()
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("X-Media-Id")] = time.Now()
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer other.Close()
	port := strconv.Itoa(slow.Listener.Addr().(*net.TCPAddr).Port)
	// httptest's certificate names example.com and *.example.com.
	spellings := []string{
		"https://example.com:" + port + "/hook",
		"https://EXAMPLE.com:" + port + "/hook",
		"https://Example.Com.:" + port + "/hook",
		"https://slow.example.com:" + port + "/hook",
		"https://Slow.Example.com:" + port + "/hook",
		"https://slow.example.com.:" + port + "/hook",
		"https://SLOW.EXAMPLE.COM.:" + port + "/hook",
		"https://a.example.com:" + port + "/hook",
		"https://b.example.com:" + port + "/x?y=1",
		"https://c.example.com:" + port + "/",
		"https://d.example.com:" + port,
		"https://e.example.com:" + port + "/hook",
		"https://f.example.com:" + port + "/hook#frag",
		"https://g.example.com:" + port + "/hook",
		"https://h.example.com:" + port + "/hook",
	}
	keys := map[string]bool{}
	for _, s := range spellings {
		k, err := urlguard.DestinationKey(s)
		if err != nil {
			t.Fatalf("DestinationKey(%s): %v", s, err)
		}
		keys[k] = true
	}
	if len(keys) != 1 {
		t.Fatalf("the 15 spellings have %d destination keys, want 1: %v", len(keys), keys)
	}

	redisSrv := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: redisSrv.Addr(), PoolSize: 200})
	defer rdb.Close()
	st := store.New(rdb, time.Hour)
	defer st.Close()
	client := asynq.NewClientFromRedisClient(rdb)
	defer client.Close()
	svc := &queue.Service{Client: client, Inspector: asynq.NewInspectorFromRedisClient(rdb), Store: st}

	roots := slow.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	guard := urlguard.New(netip.MustParsePrefix("127.0.0.1/32"))
	dns := testenv.StartDNS(t, netip.MustParseAddr("127.0.0.1"))
	rec := &countingRecorder{}
	handler := &worker.Handler{
		Metrics: rec,
		Client:  worker.NewClient(worker.ClientOptions{Guard: guard, RootCAs: roots, Concurrency: 100, Resolver: dns.Resolver()}),
		Store:   st,
		Timeout: 5 * time.Second,
		Limiter: limiter.New(capPerDestination),
	}
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{
		Concurrency: 100, PollInterval: 10 * time.Millisecond, ForwardInterval: 50 * time.Millisecond,
		ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	}))
	mux := asynq.NewServeMux()
	mux.Handle(dispatcher.TypeDeliver, handler)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	ctx := context.Background()
	enqueue := func(id, webhook string) time.Time {
		t.Helper()
		at := time.Now()
		d := dispatcher.Delivery{ID: id, Webhook: webhook, Body: []byte(`{"id":"` + id + `"}`)}
		if err := svc.Enqueue(ctx, d); err != nil {
			t.Fatalf("enqueue %s: %v", id, err)
		}
		return at
	}
	// otherCustomer sends n webhooks 20 ms apart and returns each one's
	// enqueue-to-arrival latency, sorted.
	otherCustomer := func(run string, n int) []time.Duration {
		sent := map[string]time.Time{}
		for i := range n {
			id := fmt.Sprintf("%s-%d", run, i)
			sent[id] = enqueue(id, other.URL+"/hook")
			time.Sleep(20 * time.Millisecond)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := 0
			for id := range sent {
				if _, ok := arrived[id]; ok {
					got++
				}
			}
			mu.Unlock()
			if got == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d webhooks arrived in 30 s", run, got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		lat := make([]time.Duration, 0, n)
		for id, at := range sent {
			lat = append(lat, arrived[id].Sub(at))
		}
		slices.Sort(lat)
		return lat
	}
	p := func(lat []time.Duration, q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }

	quiet := otherCustomer("quiet", 200)
	for i := range 300 {
		enqueue(fmt.Sprintf("slow-%d", i), spellings[i%len(spellings)])
	}
	// Measure while the attack runs, not while the worker first reads
	// through the 300-task burst: any 300 webhooks queued at once, healthy
	// or not, delay what is queued behind them (one FIFO queue).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, err := svc.Inspector.GetQueueInfo(queue.DefaultQueue)
		if err == nil && info.Pending == 0 && inFlight.Load() == capPerDestination {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the burst was not read through in 20 s: %+v, %v", info, err)
		}
	}
	deferredBefore := rec.deferred.Load()
	attacked := otherCustomer("attacked", 200)
	t.Logf("deferrals during the attacked run: %d", rec.deferred.Load()-deferredBefore)
	t.Logf("other customer: quiet p50 %s p99 %s; while 300 slow webhooks in 15 spellings wait: p50 %s p99 %s; slow server's max in flight %d (cap %d)",
		p(quiet, .5), p(quiet, .99), p(attacked, .5), p(attacked, .99), maxInFlight.Load(), capPerDestination)

	if got := maxInFlight.Load(); got > capPerDestination {
		t.Errorf("the slow server had %d requests in flight at once, want at most %d whatever the spelling", got, capPerDestination)
	}
	// Within 2× of the quiet run; the 50 ms floor is the poll-driven
	// granularity of a single run on a shared 2-core machine (the fault this
	// guards against cost seconds).
	if limit := max(2*p(quiet, .99), p(quiet, .99)+50*time.Millisecond); p(attacked, .99) > limit {
		t.Errorf("other customer's p99 %s under attack, want at most %s (quiet p99 %s)", p(attacked, .99), limit, p(quiet, .99))
	}
	for _, name := range dns.Names() {
		if name[len(name)-1] != '.' {
			t.Errorf("resolver was asked %q, not a fully qualified name", name)
		}
	}
}

// countingRecorder counts deferrals; the rest of worker.Recorder is ignored.
type countingRecorder struct{ deferred atomic.Int64 }

func (r *countingRecorder) ObserveAttempt(dispatcher.Outcome, int, int, time.Duration) {}
func (r *countingRecorder) ObserveDelivered(time.Duration)                             {}
func (r *countingRecorder) Failed()                                                    {}
func (r *countingRecorder) Deferred()                                                  { r.deferred.Add(1) }
func (r *countingRecorder) InFlight(int)                                               {}
