package worker

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// fakeDNS answers every A query with answer: a resolver the test controls.
func fakeDNS(tb testing.TB, answer netip.Addr) *net.Resolver {
	return testenv.StartDNS(tb, answer).Resolver()
}

func newTestStore(tb testing.TB) *store.Store {
	tb.Helper()
	mr := miniredis.RunT(tb)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	tb.Cleanup(func() { rdb.Close() })
	return store.New(rdb, time.Hour)
}

func tlsReceiver(tb testing.TB, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv, &hits
}

func testTask(tb testing.TB, id, webhook string) *asynq.Task {
	tb.Helper()
	task, err := dispatcher.NewTask(dispatcher.Delivery{ID: id, Webhook: webhook, EnqueuedAt: time.Now(), Body: []byte(`{"id":"` + id + `"}`)})
	if err != nil {
		tb.Fatal(err)
	}
	return task
}

// TestDNSRebindingBlocked: the URL names a public-looking host, so it passes
// registration, but at dial time the name resolves to 127.0.0.1. The dialer's
// guard refuses it: the receiver counts no request and the log says blocked.
func TestDNSRebindingBlocked(t *testing.T) {
	srv, hits := tlsReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	webhook := "https://example.com:" + strconv.Itoa(port) + "/hook" // httptest's certificate names example.com
	if err := urlguard.CheckURL(webhook); err != nil {
		t.Fatalf("registration refused a public name: %v", err)
	}
	resolver := fakeDNS(t, netip.MustParseAddr("127.0.0.1"))
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	for _, tt := range []struct {
		name      string
		guard     *urlguard.Guard
		wantErr   bool
		wantHits  int64
		wantClass dispatcher.Outcome
	}{
		{"default guard", urlguard.New(), true, 0, dispatcher.OutcomeBlocked},
		// Control: the same set-up with loopback exempted does connect, so the
		// refusal above is the guard's doing and not a broken test.
		{"loopback exempted", urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), false, 1, dispatcher.OutcomeDelivered},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := newTestStore(t)
			h := &Handler{
				Client:   NewClient(ClientOptions{Guard: tt.guard, RootCAs: roots, Resolver: resolver}),
				Store:    store,
				Schedule: schedule.Production,
				Timeout:  2 * time.Second,
			}
			before := hits.Load()
			err := h.ProcessTask(context.Background(), testTask(t, "rebind-1", webhook))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ProcessTask = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, urlguard.ErrForbidden) {
				t.Errorf("error %v does not wrap urlguard.ErrForbidden", err)
			}
			if got := hits.Load() - before; got != tt.wantHits {
				t.Errorf("receiver got %d requests, want %d", got, tt.wantHits)
			}
			attempts, _ := store.Attempts(context.Background(), "rebind-1")
			if len(attempts) != 1 || attempts[0].Outcome != tt.wantClass {
				t.Errorf("attempt log = %+v, want one %s", attempts, tt.wantClass)
			}
		})
	}
}

// recordingDialer wraps the guard's Control and records every address the
// transport tries to connect to.
type recordingDialer struct {
	mu    sync.Mutex
	addrs []string
}

func (r *recordingDialer) control(g *urlguard.Guard) func(string, string, syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		r.mu.Lock()
		r.addrs = append(r.addrs, address)
		r.mu.Unlock()
		return g.Control(network, address, c)
	}
}

// TestRedirectNotFollowed: a 302 to the metadata address is an ordinary failed
// attempt; the only address ever dialled is the receiver's own.
func TestRedirectNotFollowed(t *testing.T) {
	srv, hits := tlsReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	guard := urlguard.New(netip.MustParsePrefix("127.0.0.1/32"))
	rec := &recordingDialer{}
	client := NewClient(ClientOptions{Guard: guard, RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
	tr := client.Transport.(*http.Transport)
	tr.DialContext = (&net.Dialer{Control: rec.control(guard)}).DialContext

	store := newTestStore(t)
	h := &Handler{Client: client, Store: store, Schedule: schedule.Production, Timeout: 2 * time.Second}
	err := h.ProcessTask(context.Background(), testTask(t, "redirect-1", srv.URL+"/hook"))
	var se *dispatcher.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusFound {
		t.Fatalf("ProcessTask = %v, want dispatcher.StatusError 302", err)
	}
	if hits.Load() != 1 {
		t.Errorf("receiver got %d requests, want 1", hits.Load())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, a := range rec.addrs {
		if a != srv.Listener.Addr().String() {
			t.Errorf("dialled %s, want only the receiver %s", a, srv.Listener.Addr())
		}
	}
	attempts, _ := store.Attempts(context.Background(), "redirect-1")
	if len(attempts) != 1 || attempts[0].Outcome != dispatcher.OutcomeHTTPStatus || attempts[0].Status != 302 {
		t.Errorf("attempt log = %+v", attempts)
	}
}

// TestNoProxyFromEnvironment: HTTPS_PROXY must not route deliveries through a
// proxy, which would hide the real destination from the guard.
func TestNoProxyFromEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	tr := NewClient(ClientOptions{}).Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Fatal("transport has a Proxy function")
	}
	if !tr.DisableCompression {
		t.Error("transparent gzip is on: a gzip bomb would be inflated")
	}
	if tr.MaxIdleConnsPerHost < 100 {
		t.Errorf("MaxIdleConnsPerHost = %d, want the worker concurrency", tr.MaxIdleConnsPerHost)
	}
}
