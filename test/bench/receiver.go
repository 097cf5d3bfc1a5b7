package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// healthyDestinations is how many healthy receiver ports (destinations, as
// the per-destination cap counts them) a run opens.
const healthyDestinations = 16

// maxHold bounds how long the hanging endpoint holds a request.
const maxHold = 60 * time.Second

// receivers are HTTPS endpoints on loopback (httptest's TLS certificate, valid
// for 127.0.0.1): healthy ones that count arrivals into the current tally,
// and one that accepts TLS, reads the request and never answers.
type receivers struct {
	healthy []*httptest.Server
	hang    *httptest.Server
	caFile  string
	cur     atomic.Pointer[tally]
	held    atomic.Int64 // requests the hanging endpoint got
	dups    atomic.Int64 // repeated arrivals of one id, over the whole run
	strays  atomic.Int64 // arrivals not expected by the current tally
	stop    chan struct{}
}

func newReceivers(dir string, n int) (*receivers, error) {
	r := &receivers{stop: make(chan struct{})}
	quiet := log.New(io.Discard, "", 0)
	for range n {
		s := httptest.NewUnstartedServer(http.HandlerFunc(r.serveHealthy))
		s.Config.ErrorLog = quiet
		s.StartTLS()
		r.healthy = append(r.healthy, s)
	}
	r.hang = httptest.NewUnstartedServer(http.HandlerFunc(r.serveHang))
	r.hang.Config.ErrorLog = quiet
	r.hang.StartTLS()
	r.caFile = filepath.Join(dir, "receiver-ca.pem")
	if err := testenv.WriteCAFile(r.healthy[0], r.caFile); err != nil { // every httptest server shares one certificate
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *receivers) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	for _, s := range r.healthy {
		s.Close()
	}
	if r.hang != nil {
		r.hang.Close()
	}
}

// url returns the webhook URL of healthy destination i (modulo their number).
func (r *receivers) url(i int) string { return r.healthy[i%len(r.healthy)].URL + "/hook" }

func (r *receivers) hangURL() string { return r.hang.URL + "/hook" }

func (r *receivers) serveHealthy(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	_, _ = io.Copy(io.Discard, req.Body)
	t := r.cur.Load()
	if t == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	t.inFlight(1)
	defer t.inFlight(-1)
	switch t.arrive(req.Header.Get("X-Media-Id"), now) {
	case arrivalDuplicate:
		r.dups.Add(1)
	case arrivalStray:
		r.strays.Add(1)
	}
	if t.delay > 0 {
		select {
		case <-time.After(t.delay):
		case <-r.stop:
		}
	}
	if t.status != 0 {
		w.WriteHeader(t.status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// serveHang reads the request and then holds it until the client gives up
// (closes the connection), the receivers close, or maxHold passes.
func (r *receivers) serveHang(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, req.Body) // the server notices a close only once the body is read
	r.held.Add(1)
	select {
	case <-req.Context().Done():
	case <-r.stop:
	case <-time.After(maxHold):
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

// Delivery ids carry what the receiver needs: "<run>.<class>.<seq>.<unix ns
// at enqueue>", e.g. "r7.a.42.1732740000123456789". The run prefix keeps
// stragglers from an earlier run out of the count; the class lets one run
// count two halves separately.
func deliveryID(run string, class byte, seq int, at time.Time) string {
	b := make([]byte, 0, 48)
	b = append(b, run...)
	b = append(b, '.', class, '.')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, at.UnixNano(), 10)
	return string(b)
}

func parseID(id string) (run string, class byte, enqueued int64, ok bool) {
	parts := strings.Split(id, ".")
	if len(parts) != 4 || len(parts[1]) != 1 {
		return "", 0, 0, false
	}
	ns, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", 0, 0, false
	}
	return parts[0], parts[1][0], ns, true
}

// tally counts one run's arrivals per class: unique ids, duplicates, the time
// the expected count was reached and, when asked, enqueue→arrival latencies.
type tally struct {
	run    string
	status int           // answer code; 0 means 200
	delay  time.Duration // wait before answering

	mu          sync.Mutex
	seen        map[string]struct{}
	classes     map[byte]*classTally
	dups        int
	stray       int // ids of another run or unparseable
	flight, top int // requests being answered now, and the most at once
}

type classTally struct {
	want    int
	n       int
	lat     []latSample
	keepLat bool
	doneAt  time.Time
	done    chan struct{}
}

var runSeq atomic.Int64

// newTally returns an empty tally with a fresh run prefix.
func newTally() *tally {
	return &tally{
		run:     "r" + strconv.FormatInt(runSeq.Add(1), 10),
		seen:    map[string]struct{}{},
		classes: map[byte]*classTally{},
	}
}

// expect sets how many unique arrivals of class end the wait, and whether to
// keep their latencies.
func (t *tally) expect(class byte, want int, keepLat bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &classTally{want: want, keepLat: keepLat, done: make(chan struct{})}
	if want <= 0 {
		close(c.done)
	}
	t.classes[class] = c
}

func (t *tally) inFlight(d int) {
	t.mu.Lock()
	t.flight += d
	t.top = max(t.top, t.flight)
	t.mu.Unlock()
}

// What arrive made of a request.
const (
	arrivalNew = iota
	arrivalDuplicate
	arrivalStray // another run's id, an unexpected class, or no id
)

// arrive counts one request.
func (t *tally) arrive(id string, now time.Time) int {
	run, class, enq, ok := parseID(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.classes[class]
	if !ok || run != t.run || c == nil {
		t.stray++
		return arrivalStray
	}
	if _, dup := t.seen[id]; dup {
		t.dups++
		return arrivalDuplicate
	}
	t.seen[id] = struct{}{}
	c.n++
	if c.keepLat {
		c.lat = append(c.lat, latSample{enq: enq, d: now.Sub(time.Unix(0, enq))})
	}
	if c.n == c.want {
		c.doneAt = now
		close(c.done)
	}
	return arrivalNew
}

// wait blocks until class reached its expected count, or timeout, or stop.
func (t *tally) wait(class byte, timeout time.Duration, stop <-chan struct{}) (time.Time, error) {
	t.mu.Lock()
	c := t.classes[class]
	t.mu.Unlock()
	if c == nil {
		return time.Time{}, fmt.Errorf("class %c not expected", class)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
		t.mu.Lock()
		defer t.mu.Unlock()
		return c.doneAt, nil
	case <-stop:
		return time.Time{}, errStopped
	case <-timer.C:
		n, want := t.count(class)
		return time.Time{}, fmt.Errorf("receiver got %d of %d deliveries (class %c) within %s: lost or stuck", n, want, class, timeout)
	}
}

func (t *tally) count(class byte) (n, want int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.classes[class]; c != nil {
		return c.n, c.want
	}
	return 0, 0
}

// latSample is one arrival: its enqueue time (unix ns) and latency.
type latSample struct {
	enq int64
	d   time.Duration
}

func (t *tally) latencies(class byte) []latSample {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.classes[class]; c != nil {
		return append([]latSample(nil), c.lat...)
	}
	return nil
}

func (t *tally) maxInFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.top
}
