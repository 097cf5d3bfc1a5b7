package worker

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// captured is one request a recordingReceiver got.
type captured struct {
	header http.Header
	body   []byte
	at     time.Time
}

// recordingReceiver is a real TLS server that records requests and answers
// with the next of codes (200 once they run out).
func recordingReceiver(tb testing.TB, codes ...int) (*httptest.Server, func() []captured) {
	tb.Helper()
	var mu sync.Mutex
	var got []captured
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{r.Header.Clone(), b, time.Now()})
		n := len(got)
		mu.Unlock()
		code := http.StatusOK
		if n <= len(codes) {
			code = codes[n-1]
		}
		w.WriteHeader(code)
	}))
	tb.Cleanup(srv.Close)
	return srv, func() []captured { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
}

func trustingClient(srv *httptest.Server) Doer {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: pool})
}

func signedTask(tb testing.TB, id, webhook string) dispatcher.Delivery {
	tb.Helper()
	return dispatcher.Delivery{ID: id, Webhook: webhook, EnqueuedAt: time.Now(), Body: []byte(`{"id":"` + id + `","status":"success"}`), Signed: true}
}

// documentedHeaders is the whole header set of an unsigned request, as the
// provider's page documents it, plus what HTTP/1.1 itself adds.
var documentedHeaders = []string{"Content-Type", "X-Webhook-Source", "X-Media-Id", "User-Agent", "Content-Length"}

// TestUnsignedRequestIsTheDocumentedOne: with signing off (no Signer, no
// secret) a request carries exactly the documented headers, our User-Agent
// and the stored body bytes: signing adds nothing when off.
func TestUnsignedRequestIsTheDocumentedOne(t *testing.T) {
	srv, got := recordingReceiver(t)
	h := &Handler{Client: trustingClient(srv), Store: newTestStore(t), UserAgent: "artificial-studio-webhooks/test"}
	d := dispatcher.Delivery{ID: "gen.1", Webhook: srv.URL + "/hook", EnqueuedAt: time.Now(), Body: []byte(`{"id":"gen.1", "spacing": "kept"}`)}
	task, err := dispatcher.NewTask(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	reqs := got()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests", len(reqs))
	}
	var names []string
	for k := range reqs[0].header {
		names = append(names, k)
	}
	slices.Sort(names)
	want := slices.Sorted(slices.Values(documentedHeaders))
	if !slices.Equal(names, want) {
		t.Errorf("headers %v, want exactly %v", names, want)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "X-Webhook-Source": "artificial-studio", "X-Media-Id": "gen.1", "User-Agent": "artificial-studio-webhooks/test"} {
		if g := reqs[0].header.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if string(reqs[0].body) != string(d.Body) {
		t.Errorf("body %s, want the stored bytes %s", reqs[0].body, d.Body)
	}
}

// TestSignedAttempts: with provider keys and a per-delivery secret, every
// attempt carries the documented headers plus webhook-id (the delivery id),
// webhook-timestamp (that attempt's time) and one entry per key and secret,
// each verifying alone with its own key.
func TestSignedAttempts(t *testing.T) {
	srv, got := recordingReceiver(t, http.StatusInternalServerError)
	k1, p1, _ := signature.GenerateKey(nil)
	k2, p2, _ := signature.GenerateKey(nil)
	sec, _ := signature.GenerateSecret(nil)
	st := newTestStore(t)
	if err := st.SetSecret(context.Background(), "gen.2", sec); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Client: trustingClient(srv), Store: st, UserAgent: "artificial-studio-webhooks/test", Signer: signature.Signer{Keys: []signature.PrivateKey{k1, k2}}}
	task, err := dispatcher.NewTask(signedTask(t, "gen.2", srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessTask(context.Background(), task); err == nil {
		t.Fatal("first attempt (500) reported success")
	}
	if err := h.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	reqs := got()
	if len(reqs) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		for _, k := range documentedHeaders {
			if r.header.Get(k) == "" {
				t.Errorf("attempt %d lost documented header %s", i+1, k)
			}
		}
		sh := signature.FromHeader(r.header)
		if sh.ID != "gen.2" {
			t.Errorf("attempt %d: webhook-id %q, want the delivery id", i+1, sh.ID)
		}
		ts, err := strconv.ParseInt(sh.Timestamp, 10, 64)
		if err != nil || ts < r.at.Add(-2*time.Second).Unix() || ts > r.at.Unix() {
			t.Errorf("attempt %d: webhook-timestamp %q, received at %d: want this attempt's time", i+1, sh.Timestamp, r.at.Unix())
		}
		entries := strings.Split(sh.Signature, " ")
		if len(entries) != 3 || !strings.HasPrefix(entries[0], "v1,") || !strings.HasPrefix(entries[1], "v1a,") || !strings.HasPrefix(entries[2], "v1a,") {
			t.Fatalf("attempt %d: webhook-signature %q, want v1 then two v1a entries", i+1, sh.Signature)
		}
		keys := []signature.Key{sec, p1, p2}
		for j, e := range entries {
			alone := sh
			alone.Signature = e
			for ki, k := range keys {
				err := signature.Verify(alone, r.body, r.at, 0, k)
				if (err == nil) != (ki == j) {
					t.Errorf("attempt %d, entry %d with key %d: Verify = %v", i+1, j, ki, err)
				}
			}
		}
	}
}

// TestSecretOnlyAndMissingSecret: without provider keys a delivery with its
// own secret is signed v1 only; a signed delivery whose secret is gone goes
// out with the v1a entries only, and without keys, unsigned.
func TestSecretOnlyAndMissingSecret(t *testing.T) {
	srv, got := recordingReceiver(t)
	sec, _ := signature.GenerateSecret(nil)
	k1, _, _ := signature.GenerateKey(nil)
	st := newTestStore(t)
	if err := st.SetSecret(context.Background(), "with-secret", sec); err != nil {
		t.Fatal(err)
	}
	run := func(h *Handler, id string) captured {
		t.Helper()
		task, err := dispatcher.NewTask(signedTask(t, id, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		reqs := got()
		return reqs[len(reqs)-1]
	}
	r := run(&Handler{Client: trustingClient(srv), Store: st}, "with-secret")
	if sig := r.header.Get(signature.HeaderSignature); !strings.HasPrefix(sig, "v1,") || strings.Contains(sig, " ") {
		t.Errorf("secret only: webhook-signature %q, want one v1 entry", sig)
	} else if err := signature.Verify(signature.FromHeader(r.header), r.body, r.at, 0, sec); err != nil {
		t.Errorf("secret only: %v", err)
	}
	r = run(&Handler{Client: trustingClient(srv), Store: st, Signer: signature.Signer{Keys: []signature.PrivateKey{k1}}}, "secret-gone")
	if sig := r.header.Get(signature.HeaderSignature); !strings.HasPrefix(sig, "v1a,") || strings.Contains(sig, " ") {
		t.Errorf("secret gone, key set: webhook-signature %q, want one v1a entry", sig)
	}
	r = run(&Handler{Client: trustingClient(srv), Store: st}, "secret-gone-no-key")
	for _, k := range []string{signature.HeaderID, signature.HeaderTimestamp, signature.HeaderSignature} {
		if r.header.Get(k) != "" {
			t.Errorf("nothing to sign with, yet %s = %q", k, r.header.Get(k))
		}
	}
}

// TestSecretUnreadableDefers: when Redis cannot hand over a signed
// delivery's secret, the attempt is deferred (no attempt spent, nothing sent)
// rather than sent without the signature the receiver expects.
func TestSecretUnreadableDefers(t *testing.T) {
	srv, got := recordingReceiver(t)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	h := &Handler{Client: trustingClient(srv), Store: store.New(rdb, time.Hour)}
	task, err := dispatcher.NewTask(signedTask(t, "gen.3", srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	mr.Close()
	err = h.ProcessTask(context.Background(), task)
	if !errors.Is(err, dispatcher.ErrDeferred) || IsFailure(err) {
		t.Errorf("ProcessTask = %v, want a deferral that spends no attempt", err)
	}
	if n := len(got()); n != 0 {
		t.Errorf("receiver got %d requests", n)
	}
}
