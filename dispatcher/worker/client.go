package worker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// ClientOptions configures the delivery HTTP client.
type ClientOptions struct {
	// Guard judges every IP the client connects to, after DNS and on every
	// connection. nil means the default, fully closed policy.
	Guard *urlguard.Guard
	// RootCAs are the trusted roots; nil means the system pool.
	RootCAs *x509.CertPool
	// Concurrency sizes the idle-connection pool: Go's default of 2 idle
	// connections per host cuts throughput to a busy host tenfold.
	Concurrency int
	// Resolver, when set, replaces the system resolver (tests).
	Resolver *net.Resolver
}

// NewClient returns the one shared client that delivers webhooks: keep-alive
// pools sized to the worker, no proxy from the environment (a proxy would
// connect on our behalf and hide the real destination from the guard), no
// redirects, no transparent gzip (a compressed bomb stays compressed), and the
// URL guard on the dialer.
func NewClient(o ClientOptions) *http.Client {
	guard := o.Guard
	if guard == nil {
		guard = urlguard.New()
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 100
	}
	// The guard resolves the name fully qualified (no search domains),
	// drops refused answers, dials only allowed ones, and judges the
	// address of every connect(2) with its Control as the last line.
	dialer := &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		Resolver:  o.Resolver,
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialAttemptConn(guard.DialContext(dialer)),
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
		TLSHandshakeTimeout:    5 * time.Second,
		DisableCompression:     true,
		MaxIdleConns:           2 * o.Concurrency,
		MaxIdleConnsPerHost:    o.Concurrency,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ExpectContinueTimeout:  0,
	}
	return &http.Client{
		Transport: transport,
		// A redirect could point anywhere; the customer registered this URL.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// LoadCertPool returns the system roots plus the PEM certificates in file.
// An empty file name returns nil (the system pool).
func LoadCertPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
