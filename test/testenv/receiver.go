package testenv

import (
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Request is one POST a Receiver got.
type Request struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Path   string
}

// Receiver is a real HTTPS endpoint (httptest.NewTLSServer) that records every
// request and answers with Respond. Its CA is written to CAFile so the
// dispatcher can be told to trust it.
type Receiver struct {
	*httptest.Server
	CAFile string

	mu       sync.Mutex
	requests []Request
	notify   chan struct{}
}

// NewReceiver starts a receiver; respond decides each answer and may block
// (for slow receivers). n is the 1-based count of the request.
func NewReceiver(tb testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int)) *Receiver {
	tb.Helper()
	rc := &Receiver{notify: make(chan struct{}, 1)}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rc.mu.Lock()
		rc.requests = append(rc.requests, Request{At: time.Now(), Header: r.Header.Clone(), Body: body, Path: r.URL.RequestURI()})
		n := len(rc.requests)
		rc.mu.Unlock()
		select {
		case rc.notify <- struct{}{}:
		default:
		}
		if respond == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		respond(w, r, n)
	}))
	rc.Server.Config.ErrorLog = nil
	rc.StartTLS()
	tb.Cleanup(rc.Close)
	rc.CAFile = filepath.Join(tb.TempDir(), "receiver-ca.pem")
	if err := WriteCAFile(rc.Server, rc.CAFile); err != nil {
		tb.Fatal(err)
	}
	return rc
}

// WriteCAFile writes the certificate of srv, a TLS httptest server, to path as PEM, for
// a dispatcher's WEBHOOK_CA_FILE. Every httptest TLS server has the same certificate,
// valid for 127.0.0.1.
func WriteCAFile(srv *httptest.Server, path string) error {
	cert := srv.Certificate()
	if cert == nil {
		return errors.New("testenv: server has no TLS certificate")
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
}

// Status returns a respond func that always answers code.
func Status(code int) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(code) }
}

// Requests returns a copy of what arrived so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.requests...)
}

// Count is how many requests arrived.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.requests)
}

// WaitCount waits until at least n requests arrived and returns them; it fails
// the test after timeout.
func (rc *Receiver) WaitCount(tb testing.TB, n int, timeout time.Duration) []Request {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if reqs := rc.Requests(); len(reqs) >= n {
			return reqs
		}
		select {
		case <-rc.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			tb.Fatalf("receiver got %d requests, want %d within %s", rc.Count(), n, timeout)
		}
	}
}
