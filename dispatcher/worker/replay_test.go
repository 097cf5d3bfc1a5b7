package worker

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// wireRecorder remembers every request a raw receiver parsed, with the header
// names exactly as they came over the wire.
type wireRecorder struct {
	mu      sync.Mutex
	ids     []string
	headers [][]string
}

// read reads one request (request line, headers, Content-Length body).
func (w *wireRecorder) read(tp *textproto.Reader) error {
	if _, err := tp.ReadLine(); err != nil {
		return err
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(h.Get("Content-Length"))
	if err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, tp.R, int64(n)); err != nil {
		return err
	}
	var names []string
	for k, vv := range h {
		for range vv {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	w.mu.Lock()
	w.ids = append(w.ids, h.Get("X-Media-Id"))
	w.headers = append(w.headers, names)
	w.mu.Unlock()
	return nil
}

// timesSeen counts how often the receiver parsed each id.
func (w *wireRecorder) timesSeen() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]int{}
	for _, id := range w.ids {
		seen[id]++
	}
	return seen
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// TestNoSpuriousFailureOnReusedConn: a receiver that answers the first request
// on each connection and then closes it, either when the next request starts
// to arrive (Node's keepAliveTimeout crossing the request) or right after
// answering, never saw that next request. It is replayed on a fresh
// connection within the same attempt: no attempt fails, every delivery is
// parsed by the receiver exactly once, and the wire carries exactly the
// documented headers (no Idempotency-Key).
func TestNoSpuriousFailureOnReusedConn(t *testing.T) {
	for _, mode := range []string{"reset when the next request arrives", "close right after answering"} {
		t.Run(mode, func(t *testing.T) {
			var wire wireRecorder
			rcv := newRawReceiver(t, func(r *rawReceiver, c net.Conn) {
				tc := r.tls(c)
				tp := textproto.NewReader(bufio.NewReader(tc))
				if err := wire.read(tp); err != nil {
					return
				}
				if _, err := io.WriteString(tc, okAnswer); err != nil {
					return
				}
				if mode == "reset when the next request arrives" {
					// The next request's first bytes stay unread, so the
					// close below sends a reset.
					_, _ = tp.R.Peek(1)
				}
			})
			h := &Handler{
				Client:    NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: rcv.Roots}),
				Timeout:   5 * time.Second,
				UserAgent: payload.UserAgent("test"),
			}
			const tries = 200
			failed := 0
			for i := range tries {
				if err := h.ProcessTask(context.Background(), testTask(t, "reuse-"+strconv.Itoa(i), rcv.URL)); err != nil {
					failed++
					if failed <= 3 {
						t.Logf("try %d: %v", i, err)
					}
				}
			}
			if failed != 0 {
				t.Errorf("%d of %d attempts failed on a connection the receiver had closed", failed, tries)
			}
			seen := wire.timesSeen()
			for i := range tries {
				if n := seen["reuse-"+strconv.Itoa(i)]; n != 1 {
					t.Errorf("receiver parsed reuse-%d %d times, want exactly once", i, n)
				}
			}
			want := []string{"Content-Length", "Content-Type", "Host", "User-Agent", "X-Media-Id", textproto.CanonicalMIMEHeaderKey(payload.HeaderSource)}
			slices.Sort(want)
			wire.mu.Lock()
			defer wire.mu.Unlock()
			for i, got := range wire.headers {
				if !slices.Equal(got, want) {
					t.Fatalf("request %d carried headers %v, want exactly %v", i, got, want)
				}
			}
		})
	}
}

// TestAnsweredRequestNotReplayed: on a reused connection, a receiver that
// begins an answer (part of a status line) and then hangs up has seen the
// request; that attempt fails and the request is not sent again.
func TestAnsweredRequestNotReplayed(t *testing.T) {
	var wire wireRecorder
	rcv := newRawReceiver(t, func(r *rawReceiver, c net.Conn) {
		tc := r.tls(c)
		tp := textproto.NewReader(bufio.NewReader(tc))
		if wire.read(tp) != nil {
			return
		}
		if _, err := io.WriteString(tc, okAnswer); err != nil {
			return
		}
		if wire.read(tp) != nil {
			return
		}
		_, _ = io.WriteString(tc, "HTTP/1.1 50") // and hang up
	})
	h := &Handler{
		Client:    NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: rcv.Roots}),
		Timeout:   5 * time.Second,
		UserAgent: payload.UserAgent("test"),
	}
	const tries = 50
	failed := 0
	for i := range tries {
		if err := h.ProcessTask(context.Background(), testTask(t, "answered-"+strconv.Itoa(i), rcv.URL)); err != nil {
			failed++
		}
	}
	// Every second request rides a reused connection and gets the torn answer.
	if failed != tries/2 {
		t.Errorf("%d of %d attempts failed, want %d (every second one)", failed, tries, tries/2)
	}
	seen := wire.timesSeen()
	for i := range tries {
		if n := seen["answered-"+strconv.Itoa(i)]; n != 1 {
			t.Errorf("receiver parsed answered-%d %d times, want exactly once", i, n)
		}
	}
}
