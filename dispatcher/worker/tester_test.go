package worker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// expiredServer is a TLS server whose self-signed certificate for 127.0.0.1
// expired at notAfter; pool trusts it, so expiry is the only fault.
func expiredServer(t *testing.T, notAfter time.Time) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "expired"},
		NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	srv.Config.ErrorLog = nil
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return srv, pool
}

// TestTesterAnswers: the test send against real receivers gives the
// documented answer for each kind of endpoint.
func TestTesterAnswers(t *testing.T) {
	guard := urlguard.New(netip.MustParsePrefix("127.0.0.1/32"))
	k, pub, _ := signature.GenerateKey(nil)
	var seen captured
	ok := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.header = r.Header.Clone()
		seen.body, _ = io.ReadAll(r.Body)
		seen.at = time.Now()
		w.WriteHeader(200)
	}))
	t.Cleanup(ok.Close)
	failing := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	t.Cleanup(failing.Close)
	release := make(chan struct{})
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	expiredAt := time.Now().Add(-48 * time.Hour).Truncate(time.Second).UTC()
	expired, expiredPool := expiredServer(t, expiredAt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "https://" + ln.Addr().String() + "/hook?token=s3cr3t"
	ln.Close()

	pool := x509.NewCertPool()
	for _, s := range []*httptest.Server{ok, failing, slow} {
		pool.AddCert(s.Certificate())
	}
	tester := func(roots *x509.CertPool) *Tester {
		return &Tester{
			Client: NewClient(ClientOptions{Guard: guard, RootCAs: roots}), Guard: guard,
			Signer: signature.Signer{Keys: []signature.PrivateKey{k}}, Timeout: 500 * time.Millisecond, UserAgent: "artificial-studio-webhooks/test",
		}
	}
	tests := []struct {
		name    string
		roots   *x509.CertPool
		url     string
		outcome dispatcher.Outcome
		status  int
		within  bool
		tls     bool
	}{
		{"200", pool, ok.URL + "/hook", dispatcher.OutcomeDelivered, 200, true, true},
		{"500", pool, failing.URL, dispatcher.OutcomeHTTPStatus, 500, true, true},
		{"slow", pool, slow.URL, dispatcher.OutcomeTimeout, 0, false, false},
		{"expired certificate", expiredPool, expired.URL, dispatcher.OutcomeTLS, 0, false, true},
		{"connection refused", pool, refused, dispatcher.OutcomeConnect, 0, false, false},
		{"guard refuses", pool, "https://10.0.0.5/hook", dispatcher.OutcomeBlocked, 0, false, false},
		{"plain http", pool, strings.Replace(ok.URL, "https", "http", 1), dispatcher.OutcomeBlocked, 0, false, false},
	}
	for _, tt := range tests {
		r := tester(tt.roots).Send(context.Background(), tt.url, signature.Secret{})
		if r.Outcome != tt.outcome || r.Status != tt.status || r.OK != (tt.outcome == dispatcher.OutcomeDelivered) ||
			r.AnsweredWithin5s != tt.within || (r.TLS != nil) != tt.tls || (r.Error == "") != r.OK {
			out, _ := json.Marshal(r)
			t.Errorf("%s: %s; want outcome %s, status %d, answeredWithin5s %v, tls %v", tt.name, out, tt.outcome, tt.status, tt.within, tt.tls)
		}
		if !strings.HasPrefix(r.ID, dispatcher.TestIDPrefix) || len(r.ID) != len(dispatcher.TestIDPrefix)+24 {
			t.Errorf("%s: id %q, want test_ + 24 hex digits", tt.name, r.ID)
		}
		if strings.Contains(r.Error, "s3cr3t") {
			t.Errorf("%s: error %q carries the URL's query", tt.name, r.Error)
		}
		switch tt.name {
		case "200":
			if r.TLS.Version == "" || r.TLS.CertNotAfter == nil {
				t.Errorf("200: tls %+v, want version and expiry", r.TLS)
			}
		case "expired certificate":
			if r.TLS.CertNotAfter == nil || !r.TLS.CertNotAfter.Equal(expiredAt) {
				t.Errorf("expired: tls %+v, want certNotAfter %s", r.TLS, expiredAt)
			}
		}
	}

	// The 200 receiver got a documented, signed sample webhook.
	var g payload.Generation
	if err := json.Unmarshal(seen.body, &g); err != nil || !strings.HasPrefix(g.ID, dispatcher.TestIDPrefix) || g.Status != "success" || g.Type != "image" {
		t.Errorf("sample body %s: %v", seen.body, err)
	}
	if seen.header.Get("X-Media-Id") != g.ID || seen.header.Get("X-Webhook-Source") != "artificial-studio" {
		t.Errorf("headers %v", seen.header)
	}
	if err := signature.Verify(signature.FromHeader(seen.header), seen.body, seen.at, 0, pub); err != nil || seen.header.Get(signature.HeaderID) != g.ID {
		t.Errorf("test webhook signature: %v", err)
	}
}
