package test

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// testCA is a throwaway certificate authority for receivers with bad certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// leaf issues a certificate for 127.0.0.1 valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// hostileServer starts an HTTPS server on loopback that counts its requests.
func hostileServer(t *testing.T, cert *tls.Certificate, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		// Read the body first: only then does net/http watch the connection
		// and cancel r.Context() when the client hangs up.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		h(w, r)
	}))
	srv.Config.ErrorLog = nil
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &hits
}

// hijack takes the connection over from net/http.
func hijack(w http.ResponseWriter) net.Conn {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	return conn
}

// TestHostileReceivers points deliveries at receivers that misbehave in every
// way we know: one never answers, one trickles its status line a byte a
// second, one answers 200 and then trickles its body, one streams a 4 GiB
// body, one sends a gzip bomb, one has an expired certificate, one a
// certificate from an unknown CA, one redirects to the cloud metadata address
// and one to a loopback canary, and one resets the connection. Each ends
// with the expected outcome, the worker reads at most 64 KiB of any answer,
// follows no redirect, and stays within 100 MB of its starting RSS, while a
// stream of deliveries to a healthy receiver keeps arriving on time.
func TestHostileReceivers(t *testing.T) {
	if testing.Short() {
		t.Skip("ten attempts against each hostile receiver: 15–30 s")
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	healthy := testenv.NewReceiver(t, nil)
	stop := make(chan struct{}) // ends the trickles and hangs at test end

	// The bad-certificate receivers: one signed by a CA the worker trusts
	// (so that the only fault is the expiry), one by a CA it does not know.
	trusted, unknown := newTestCA(t, "trusted test CA"), newTestCA(t, "unknown test CA")
	caPEM, err := os.ReadFile(healthy.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(caFile, append(caPEM, trusted.pem()...), 0o600); err != nil {
		t.Fatal(err)
	}
	expired := trusted.leaf(t, time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour))
	foreign := unknown.leaf(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))

	var bomb bytes.Buffer // 1 GiB of zeros in about 1.3 MB
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	zeros := make([]byte, 1<<20)
	for range 1024 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()

	var (
		bigMu      sync.Mutex
		bigWritten []int64 // bytes the 4 GiB receiver managed to write, per request
	)
	canary, canaryHits := hostileServer(t, nil, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	kinds := []hostileKind{
		{name: "hang", final: "failed", outcome: "timeout", handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}},
		{name: "trickle-status", final: "failed", outcome: "timeout", handler: func(w http.ResponseWriter, _ *http.Request) {
			conn := hijack(w)
			defer conn.Close()
			for _, b := range []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") {
				if _, err := conn.Write([]byte{b}); err != nil {
					return
				}
				select {
				case <-time.After(time.Second):
				case <-stop:
					return
				}
			}
		}},
		{name: "trickle-body", final: "delivered", outcome: "delivered", status: 200, handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			for range 30 {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-time.After(time.Second):
				case <-stop:
					return
				}
			}
		}},
		{name: "4GiB-body", final: "failed", outcome: "http_status", status: 500, handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(int64(4)<<30))
			w.WriteHeader(http.StatusInternalServerError)
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
			var n int64
			defer func() {
				bigMu.Lock()
				bigWritten = append(bigWritten, n)
				bigMu.Unlock()
			}()
			for n < int64(4)<<30 {
				m, err := w.Write(chunk)
				n += int64(m)
				if err != nil {
					return
				}
			}
		}},
		{name: "gzip-bomb", final: "failed", outcome: "http_status", status: 500, handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(bomb.Bytes())
		}},
		{name: "expired-cert", cert: &expired, final: "failed", outcome: "tls", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}},
		{name: "unknown-ca", cert: &foreign, final: "failed", outcome: "tls", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}},
		{name: "redirect-metadata", final: "failed", outcome: "http_status", status: 302, handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusFound)
		}},
		{name: "redirect-canary", final: "failed", outcome: "http_status", status: 307, handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, canary.URL+"/stolen", http.StatusTemporaryRedirect)
		}},
		{name: "reset", final: "failed", outcome: "connect", handler: func(w http.ResponseWriter, _ *http.Request) {
			conn := hijack(w)
			if tc, ok := conn.(*tls.Conn); ok {
				if raw, ok := tc.NetConn().(*net.TCPConn); ok {
					_ = raw.SetLinger(0) // close sends RST
				}
				_ = tc.NetConn().Close()
				return
			}
			_ = conn.Close()
		}},
	}
	urls := make([]string, len(kinds))
	hits := make([]*atomic.Int64, len(kinds))
	for i, k := range kinds {
		srv, h := hostileServer(t, k.cert, k.handler)
		urls[i], hits[i] = srv.URL+"/hook", h
	}
	t.Cleanup(func() { close(stop) }) // before the servers' Close, which waits for handlers

	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + caFile, faultRetries, "DELIVERY_TIMEOUT=1s"}
	api := testenv.StartDispatcher(t, "api", env...)
	worker := testenv.StartDispatcher(t, "worker", env...)

	// Warm up, then take the baseline.
	for i := range 20 {
		enqueueOK(t, api, healthy.URL, fmt.Sprintf("warm-%02d", i))
	}
	healthy.WaitCount(t, 20, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	rssBefore := rss(t, worker.PID())

	// A steady stream to the healthy receiver for the whole hostile phase.
	streamDone := make(chan struct{})
	var (
		sentAt   sync.Map // id -> time.Time
		streamed atomic.Int64
		finished atomic.Bool
	)
	go func() {
		defer close(streamDone)
		for i := 0; i < 400; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("steady-%03d", i)
			sentAt.Store(id, time.Now())
			resp := testenv.Call(t, http.MethodPost, api.APIURL+"/v1/deliveries", testenv.Token, testenv.Delivery(healthy.URL, id))
			if resp.Status != http.StatusAccepted {
				t.Errorf("steady %s: %d", id, resp.Status)
				return
			}
			streamed.Add(1)
			if finished.Load() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	const perKind = 2
	for i, k := range kinds {
		for j := range perKind {
			enqueueOK(t, api, urls[i], fmt.Sprintf("hostile-%s-%d", k.name, j))
		}
	}
	// Sample the worker's RSS until every hostile delivery is final.
	peak := rssBefore
	deadline := time.Now().Add(60 * time.Second)
	for !allFinal(t, api, kinds, perKind) {
		peak = max(peak, rss(t, worker.PID()))
		if time.Now().After(deadline) {
			t.Fatalf("hostile deliveries not all final after 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	finished.Store(true)
	<-streamDone
	time.Sleep(500 * time.Millisecond)
	rssAfter := rss(t, worker.PID())
	peak = max(peak, rssAfter)
	const mb = 1 << 20
	t.Logf("worker RSS: %.1f MB before, peak %.1f MB, %.1f MB after %d hostile deliveries (%d requests reached the receivers)",
		float64(rssBefore)/mb, float64(peak)/mb, float64(rssAfter)/mb, len(kinds)*perKind, totalHits(hits))
	if peak-rssBefore > 100*mb {
		t.Errorf("worker RSS grew by %.1f MB (peak), want under 100 MB", float64(peak-rssBefore)/mb)
	}

	// Each hostile delivery ended as expected, with the expected outcome on
	// every attempt.
	for i, k := range kinds {
		for j := range perKind {
			id := fmt.Sprintf("hostile-%s-%d", k.name, j)
			st := api.WaitState(t, id, k.final, time.Second)
			log := attemptLog(st)
			want := 10
			if k.final == "delivered" {
				want = 1
			}
			if len(log) != want {
				t.Errorf("%s: %d attempts, want %d", id, len(log), want)
			}
			for _, a := range log {
				if a["outcome"] != k.outcome || int(num(a["status"])) != k.status {
					t.Errorf("%s: attempt %v: outcome %v status %v, want %s %d", id, a["attempt"], a["outcome"], a["status"], k.outcome, k.status)
				}
				if d := num(a["durationMs"]); d > 2500 {
					t.Errorf("%s: attempt took %.0f ms with DELIVERY_TIMEOUT 1s", id, d)
				}
				if k.name == "gzip-bomb" {
					if body, _ := a["responseBody"].(string); !strings.HasPrefix(body, "\x1f") || strings.Contains(body, strings.Repeat("\x00", 64)) {
						t.Errorf("%s: stored response %q…, want the raw gzip bytes, not inflated", id, body[:min(16, len(body))])
					}
				}
			}
		}
		if k.name == "trickle-body" || k.name == "expired-cert" || k.name == "unknown-ca" {
			continue // no request reaches the handler (TLS) or one each (delivered)
		}
		if got := hits[i].Load(); got != perKind*10 {
			t.Errorf("%s: receiver saw %d requests, want %d", k.name, got, perKind*10)
		}
	}
	for i, k := range kinds {
		if (k.name == "expired-cert" || k.name == "unknown-ca") && hits[i].Load() != 0 {
			t.Errorf("%s: a request got through the TLS handshake", k.name)
		}
	}
	bigMu.Lock()
	maxWritten := slicesMax(bigWritten)
	t.Logf("4 GiB receiver: at most %.1f MB written per attempt before the worker hung up", float64(maxWritten)/mb)
	bigMu.Unlock()
	if maxWritten > 32*mb {
		t.Errorf("the 4 GiB receiver wrote %.1f MB into one attempt: the worker read on", float64(maxWritten)/mb)
	}
	if n := canaryHits.Load(); n != 0 {
		t.Errorf("the redirect target was requested %d times: redirects must not be followed", n)
	}
	if n := logLines(worker.Logs(), `"outcome":"blocked"`); n != 0 {
		t.Errorf("%d blocked dials: something tried to follow the metadata redirect", n)
	}
	if strings.Contains(worker.Logs(), "169.254.169.254") {
		t.Errorf("the worker log mentions the metadata address")
	}

	// The healthy stream kept flowing: every one delivered, promptly.
	n := int(streamed.Load())
	reqs := healthy.WaitCount(t, 20+n, 15*time.Second)
	var lat []time.Duration
	for _, r := range reqs {
		if at, ok := sentAt.Load(r.Header.Get("X-Media-Id")); ok {
			lat = append(lat, r.At.Sub(at.(time.Time)))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) != n || n < 20 {
		t.Fatalf("healthy stream: %d sent, %d arrived", n, len(lat))
	}
	t.Logf("healthy stream during the hostile phase: %d deliveries, enqueue→arrival median %s, p99 %s, max %s",
		n, lat[n/2].Round(time.Millisecond), lat[n*99/100].Round(time.Millisecond), lat[n-1].Round(time.Millisecond))
	if lat[n-1] > 2*time.Second {
		t.Errorf("a healthy delivery took %s to arrive while hostile receivers were served", lat[n-1])
	}
	if exited, _ := worker.Wait(0); exited {
		t.Fatal("the worker exited")
	}
}

// hostileKind is one way for a receiver to misbehave, and what must come of it.
type hostileKind struct {
	name    string
	handler http.HandlerFunc
	cert    *tls.Certificate // nil: the harness's trusted certificate
	final   string           // the delivery's end state: delivered or failed
	outcome string           // of every attempt
	status  int              // of every attempt; 0 when no answer
}

// allFinal reports whether every hostile delivery reached its end state.
func allFinal(t *testing.T, api *testenv.Dispatcher, kinds []hostileKind, perKind int) bool {
	t.Helper()
	for _, k := range kinds {
		for j := range perKind {
			resp := api.Call(t, http.MethodGet, fmt.Sprintf("/v1/deliveries/hostile-%s-%d", k.name, j), nil)
			var st struct{ State string }
			if resp.Status != http.StatusOK {
				return false
			}
			resp.JSON(t, &st)
			if st.State != k.final {
				return false
			}
		}
	}
	return true
}

func rss(t *testing.T, pid int) int64 {
	t.Helper()
	n, err := testenv.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func totalHits(hits []*atomic.Int64) int64 {
	var n int64
	for _, h := range hits {
		n += h.Load()
	}
	return n
}

func slicesMax(s []int64) int64 {
	var m int64
	for _, v := range s {
		m = max(m, v)
	}
	return m
}
