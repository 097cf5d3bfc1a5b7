package worker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// rawReceiver is a TLS receiver whose every byte the test writes: serve gets
// each accepted TCP connection before the TLS handshake. Connections live at
// most receiverCap, so a test of a stalled client still ends.
type rawReceiver struct {
	URL   string
	Roots *x509.CertPool
	cert  tls.Certificate
	wg    sync.WaitGroup
}

const receiverCap = 20 * time.Second

func newRawReceiver(tb testing.TB, serve func(r *rawReceiver, c net.Conn)) *rawReceiver {
	tb.Helper()
	// httptest's certificate names 127.0.0.1 and example.com.
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.StartTLS()
	r := &rawReceiver{cert: ts.TLS.Certificates[0], Roots: ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r.URL = "https://" + ln.Addr().String() + "/hook"
	var conns sync.Map
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			_ = c.SetDeadline(time.Now().Add(receiverCap))
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer conns.Delete(c)
				defer c.Close()
				serve(r, c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		r.wg.Wait()
	})
	return r
}

// readRequest does the TLS handshake on c and reads one request, body
// included.
func (r *rawReceiver) readRequest(c net.Conn) (*tls.Conn, *bufio.Reader, *http.Request, error) {
	tc := r.tls(c)
	br := bufio.NewReader(tc)
	req, err := http.ReadRequest(br)
	if err != nil {
		return tc, br, nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return tc, br, req, err
}

// tls returns the server side of TLS over c.
func (r *rawReceiver) tls(c net.Conn) *tls.Conn {
	return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{r.cert}, NextProtos: []string{"http/1.1"}})
}

// untilClosed reads c until the client closes it.
func untilClosed(c io.Reader) { _, _ = io.Copy(io.Discard, c) }

// drip writes s every interval until a write fails.
func drip(w io.Writer, s string, interval time.Duration) {
	for {
		if _, err := io.WriteString(w, s); err != nil {
			return
		}
		time.Sleep(interval)
	}
}

// hostileAnswers are receivers that answer in shapes an ordinary 200 or 500
// does not: each must still end the attempt within the timeout.
var hostileAnswers = []struct {
	name    string
	answer  func(c net.Conn) // after the request was read
	handOff bool             // scenario works on the raw TCP conn, before TLS
	want    dispatcher.Outcome
}{
	{"101 switching protocols then silence", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		untilClosed(c)
	}, false, dispatcher.OutcomeHTTPStatus},
	{"101 then an endless stream", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		drip(c, strings.Repeat("x", 512), time.Millisecond)
	}, false, dispatcher.OutcomeHTTPStatus},
	{"100 continue storm", func(c net.Conn) {
		drip(c, "HTTP/1.1 100 Continue\r\n\r\n", 10*time.Millisecond)
	}, false, dispatcher.OutcomeTimeout},
	{"103 early hints repeated", func(c net.Conn) {
		drip(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", 10*time.Millisecond)
	}, false, dispatcher.OutcomeTimeout},
	{"slow-drip headers", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Slow: ")
		drip(c, "a", 50*time.Millisecond)
	}, false, dispatcher.OutcomeTimeout},
	{"slow-drip body after 200", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
		drip(c, "a", 50*time.Millisecond)
	}, false, dispatcher.OutcomeDelivered},
	{"endless chunked body", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n")
		drip(c, "400\r\n"+strings.Repeat("x", 0x400)+"\r\n", 0)
	}, false, dispatcher.OutcomeHTTPStatus},
	{"endless trailers", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\nx\r\n0\r\n")
		drip(c, "X-T: "+strings.Repeat("t", 100)+"\r\n", time.Millisecond)
	}, false, dispatcher.OutcomeDelivered},
	{"huge header", func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		drip(c, strings.Repeat("b", 4096), 0)
	}, false, dispatcher.OutcomeConnect},
	{"silent after the request", func(c net.Conn) { untilClosed(c) }, false, dispatcher.OutcomeTimeout},
	{"TLS handshake never answered", func(c net.Conn) { untilClosed(c) }, true, dispatcher.OutcomeTimeout},
}

// TestHostileAnswersEndWithinTimeout: whatever the receiver answers, one
// attempt ends within the timeout plus a margin, releases its
// per-destination slot, and leaves no goroutine or socket behind.
func TestHostileAnswersEndWithinTimeout(t *testing.T) {
	const timeout = time.Second
	const margin = 3 * time.Second // generous: a loaded, shared machine
	for _, tt := range hostileAnswers {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newRawReceiver(t, func(r *rawReceiver, c net.Conn) {
				if tt.handOff {
					tt.answer(c)
					return
				}
				tc, _, _, err := r.readRequest(c)
				if err != nil {
					return
				}
				tt.answer(tc)
			})
			lim := limiter.NewLocal(1)
			h := &Handler{
				Client:  NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: rcv.Roots}),
				Timeout: timeout,
				Limiter: lim,
			}
			quietG, quietFD := runtime.NumGoroutine(), openFDs(t)

			start := time.Now()
			err := h.ProcessTask(context.Background(), testTask(t, "hostile-1", rcv.URL))
			took := time.Since(start)
			t.Logf("attempt took %s: %v", took.Round(time.Millisecond), err)
			if got := dispatcher.Classify(err); got != tt.want {
				t.Errorf("outcome %s, want %s", got, tt.want)
			}
			if took > timeout+margin {
				t.Errorf("attempt took %s, want at most DELIVERY_TIMEOUT %s plus %s", took, timeout, margin)
			}
			dest, _ := destination(rcv.URL)
			if n := lim.InUse(dest); n != 0 {
				t.Errorf("%d per-destination slots still taken after the attempt", n)
			}
			waitQuiet(t, quietG, quietFD, 10*time.Second)
		})
	}
}

// TestUpgradeAnswerRefused: a 101 answer to a POST is a failed attempt with
// status 101 at once, not a stream read until the deadline.
func TestUpgradeAnswerRefused(t *testing.T) {
	rcv := newRawReceiver(t, func(r *rawReceiver, c net.Conn) {
		tc, _, _, err := r.readRequest(c)
		if err != nil {
			return
		}
		io.WriteString(tc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		untilClosed(tc)
	})
	st := newTestStore(t)
	h := &Handler{
		Client:  NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: rcv.Roots}),
		Store:   st,
		Timeout: 30 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- h.ProcessTask(context.Background(), testTask(t, "upgrade-1", rcv.URL)) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a 101 answer counted as delivered")
		}
	case <-time.After(10 * time.Second): // a third of the 30 s timeout
		t.Fatal("a 101 answer held the attempt towards its 30 s timeout")
	}
	attempts, _ := st.Attempts(context.Background(), "upgrade-1")
	if len(attempts) != 1 || attempts[0].Status != http.StatusSwitchingProtocols {
		t.Errorf("attempt log = %+v, want one attempt with status 101", attempts)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// waitQuiet polls until the goroutine and descriptor counts are back at (or
// below) their quiet levels, failing after wait.
func waitQuiet(tb testing.TB, quietG, quietFD int, wait time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for {
		g, fd := runtime.NumGoroutine(), openFDs(tb)
		if g <= quietG && fd <= quietFD {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Fatalf("after %s: %d goroutines (quiet %d), %d open descriptors (quiet %d)\n%s", wait, g, quietG, fd, quietFD, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
