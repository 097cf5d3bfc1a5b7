package test

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// fastSync lets a primary start a replica's full sync at once rather than
// after Redis's default 5 s wait for more replicas (repl-diskless-sync-delay):
// any instance may become the primary.
var fastSync = []string{"--repl-diskless-sync-delay", "0"}

// startReplicated starts a primary, n synced replicas of it and three
// sentinels (quorum 2, down after 1 s) that know them all and each other.
func startReplicated(t *testing.T, n int) (primary *testenv.Redis, replicas []*testenv.Redis, sentinels *testenv.Sentinels) {
	t.Helper()
	primary = testenv.StartRedis(t, testenv.RedisOptions{Extra: fastSync})
	for range n {
		replicas = append(replicas, replicaOf(t, primary.Port))
	}
	sentinels = testenv.StartSentinels(t, primary, testenv.SentinelOptions{})
	sentinels.WaitReady(t, n, 30*time.Second)
	return primary, replicas, sentinels
}

// replicaOf starts a new Redis replicating from the primary on 127.0.0.1:port
// and waits for the sync.
func replicaOf(t *testing.T, port int) *testenv.Redis {
	t.Helper()
	r := testenv.StartRedis(t, testenv.RedisOptions{Extra: append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(port)}, fastSync...)})
	r.WaitReplicaSynced(t, 20*time.Second)
	return r
}

// stream posts new deliveries one after another through one API process,
// resending an id answered 503 (same id, so it dedupes) until it is accepted:
// 202, or 409 for a resend whose earlier try had been stored after all.
type stream struct {
	api     *testenv.Dispatcher
	webhook string
	prefix  string

	mu         sync.Mutex
	accepted   []string
	acceptedAt []time.Time
	refusedAt  []time.Time
}

func (s *stream) run(t *testing.T, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := 0; i < 5000; i++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-%04d", s.prefix, i)
		giveUp := time.Now().Add(30 * time.Second)
		for {
			resp := testenv.Call(t, http.MethodPost, s.api.APIURL+"/v1/deliveries", testenv.Token, testenv.Delivery(s.webhook, id))
			now := time.Now()
			s.mu.Lock()
			switch resp.Status {
			case http.StatusAccepted, http.StatusConflict:
				s.accepted = append(s.accepted, id)
				s.acceptedAt = append(s.acceptedAt, now)
			case http.StatusServiceUnavailable:
				s.refusedAt = append(s.refusedAt, now)
			default:
				t.Errorf("%s: %d %s", id, resp.Status, resp.Body)
			}
			s.mu.Unlock()
			if resp.Status != http.StatusServiceUnavailable {
				break
			}
			if now.After(giveUp) {
				t.Errorf("%s: refused for 30 s", id)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// acceptedSince counts the acceptances after t0.
func (s *stream) acceptedSince(t0 time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.acceptedAt {
		if at.After(t0) {
			n++
		}
	}
	return n
}

// window returns the number of 503 answers, the first, and the first
// acceptance after it: writes failed from the fault until then.
func (s *stream) window() (refusals int, first, recovered time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refusedAt) == 0 {
		return 0, time.Time{}, time.Time{}
	}
	first = s.refusedAt[0]
	for _, at := range s.acceptedAt {
		if at.After(first) {
			recovered = at
			break
		}
	}
	return len(s.refusedAt), first, recovered
}

// TestSentinelFailover streams deliveries through two API processes, one with
// ENQUEUE_MIN_REPLICAS=1 and one without, to a primary and one replica behind
// three sentinels, SIGKILLs the primary, and lets the sentinels promote the
// replica. Writes in the failover window are answered 503 and resent by the
// client (ids dedupe). With ENQUEUE_MIN_REPLICAS=1 the new primary accepts
// nothing until it has a replica again, so a replacement replica is started
// once the switch is seen. Every delivery answered 202 (or 409 on a resend)
// by the WAIT-ing API is delivered; for the other API the test reports any
// that were lost (expected none on loopback, where replication lags by
// microseconds; TestSentinelUnreplicatedWriteIsLost loses one for certain).
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	testFailover(t, 1)
}

// TestSentinelFailoverTwoReplicas is TestSentinelFailover with two replicas:
// after the failover the new primary still has one, so the WAIT-ing API is
// refused only for the failover itself.
func TestSentinelFailoverTwoReplicas(t *testing.T) {
	t.Parallel()
	testFailover(t, 2)
}

func testFailover(t *testing.T, replicas int) {
	primary, _, sentinels := startReplicated(t, replicas)
	var delivered deliveredSet
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		delivered.add(r.Header.Get("X-Media-Id"))
		w.WriteHeader(http.StatusOK)
	})
	env := []string{"REDIS_URL=" + sentinels.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, faultRetries}
	apiWait := testenv.StartDispatcher(t, "api", append(env, "ENQUEUE_MIN_REPLICAS=1")...)
	apiNoWait := testenv.StartDispatcher(t, "api", env...)
	testenv.StartDispatcher(t, "worker", env...)

	streams := []*stream{
		{api: apiWait, webhook: rc.URL, prefix: "sentinel-wait"},
		{api: apiNoWait, webhook: rc.URL, prefix: "sentinel-nowait"},
	}
	stop := make(chan struct{})
	dones := make([]chan struct{}, len(streams))
	for i, s := range streams {
		dones[i] = make(chan struct{})
		go s.run(t, stop, dones[i])
	}
	stopStreams := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		for _, d := range dones {
			<-d
		}
	}
	t.Cleanup(stopStreams)

	time.Sleep(time.Second)
	killed := time.Now()
	primary.Kill()
	promoted, switched := sentinels.WaitFailover(t, primary.Addr(), 30*time.Second)
	msg := fmt.Sprintf("%d replica(s): primary SIGKILLed; sentinels agreed on %s after %.1f s", replicas, promoted, switched.Seconds())
	if replicas == 1 {
		replicaOf(t, portOf(t, promoted)) // the replacement an operator brings up
		msg += fmt.Sprintf("; a replacement replica was synced %.1f s after the kill", time.Since(killed).Seconds())
	}
	// Stream on until both APIs have accepted a good number after the kill.
	deadline := time.Now().Add(30 * time.Second)
	resumed := time.Now()
	for streams[0].acceptedSince(resumed) < 50 || streams[1].acceptedSince(resumed) < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume within 30 s of the failover")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopStreams()

	t.Log(msg)
	for _, s := range streams {
		n, first, back := s.window()
		t.Logf("%s: %d accepted; %d answers 503, the first at +%.1f s; writes accepted again at +%.1f s after the kill",
			s.prefix, len(s.accepted), n, first.Sub(killed).Seconds(), back.Sub(killed).Seconds())
	}
	// A dequeue the old primary ran (and replicated) just before it died
	// never answered its worker: that task sits active under a lease nobody
	// renews, until asynq's recoverer brings it back (55–120 s).
	time.Sleep(5 * time.Second)
	late := delivered.missing(streams[0].accepted)
	for _, id := range late {
		resp := apiWait.Call(t, http.MethodGet, "/v1/deliveries/"+id, nil)
		t.Logf("%s not delivered 5 s after the streams stopped: %d %s", id, resp.Status, resp.Body)
	}
	delivered.waitAll(t, streams[0].accepted, 150*time.Second)
	for _, id := range late {
		t.Logf("%s delivered %.0f s after the kill", id, time.Since(killed).Seconds())
	}
	var lost []string
	for _, id := range delivered.missing(streams[1].accepted) {
		if resp := apiNoWait.Call(t, http.MethodGet, "/v1/deliveries/"+id, nil); resp.Status == http.StatusNotFound {
			lost = append(lost, id)
		} else {
			t.Logf("without ENQUEUE_MIN_REPLICAS: %s not delivered yet but held: %s", id, resp.Body)
		}
	}
	t.Logf("without ENQUEUE_MIN_REPLICAS: %d of %d acknowledged deliveries lost in the failover %v", len(lost), len(streams[1].accepted), lost)
}

// portOf is the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSentinelUnreplicatedWriteIsLost makes asynchronous replication lose a
// write for certain: the replica is frozen (SIGSTOP) and the primary drops
// its link, so nothing written now reaches the replica. An API without
// ENQUEUE_MIN_REPLICAS answers 202 for a delivery that exists only on the
// primary; an API with ENQUEUE_MIN_REPLICAS=1 answers 503 for another (its
// WAIT gets no acknowledgement within 1 s). The primary is then SIGKILLed and
// the replica promoted: the 202 delivery is gone for good, while the 503 one
// is resent by its client and delivered.
func TestSentinelUnreplicatedWriteIsLost(t *testing.T) {
	t.Parallel()
	primary, replicas, sentinels := startReplicated(t, 1)
	replica := replicas[0]
	rc := testenv.NewReceiver(t, nil)
	env := []string{"REDIS_URL=" + sentinels.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, faultRetries}
	apiWait := testenv.StartDispatcher(t, "api", append(env, "ENQUEUE_MIN_REPLICAS=1")...)
	apiNoWait := testenv.StartDispatcher(t, "api", env...)

	// Both APIs work while the replica keeps up.
	enqueueOK(t, apiWait, rc.URL, "repl-before-wait")
	enqueueOK(t, apiNoWait, rc.URL, "repl-before-nowait")

	if err := replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := true
	t.Cleanup(func() {
		if frozen {
			_ = replica.Signal(syscall.SIGCONT)
		}
	})
	if n, err := testenv.Command(primary.Addr(), "CLIENT", "KILL", "TYPE", "replica"); err != nil || n != int64(1) {
		t.Fatalf("drop the replica link: %v %v", n, err)
	}
	enqueueOK(t, apiNoWait, rc.URL, "repl-acked-nowait")
	start := time.Now()
	resp := apiWait.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "repl-refused-wait"))
	t.Logf("with the replica cut off: ENQUEUE_MIN_REPLICAS=1 answered %d after %s", resp.Status, time.Since(start).Round(time.Millisecond))
	if resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("ENQUEUE_MIN_REPLICAS=1 with no replica: %d %s, want 503", resp.Status, resp.Body)
	}
	// On the primary, both exist: the 503 one too (stored, not replicated).
	apiNoWait.WaitState(t, "repl-acked-nowait", "pending", time.Second)
	apiNoWait.WaitState(t, "repl-refused-wait", "pending", time.Second)

	primary.Kill()
	_ = replica.Signal(syscall.SIGCONT)
	frozen = false
	took := sentinels.WaitMaster(t, replica.Addr(), 60*time.Second)
	t.Logf("replica promoted %.1f s after the primary was killed", took.Seconds())

	if resp := apiNoWait.Call(t, http.MethodGet, "/v1/deliveries/repl-acked-nowait", nil); resp.Status != http.StatusNotFound {
		t.Errorf("the 202 delivery written only to the old primary: GET %d %s, want 404 (lost)", resp.Status, resp.Body)
	} else {
		t.Logf("without ENQUEUE_MIN_REPLICAS a delivery answered 202 was lost in the failover, as asynchronous replication allows")
	}
	for _, id := range []string{"repl-before-wait", "repl-before-nowait"} {
		apiWait.WaitState(t, id, "pending", 10*time.Second)
	}

	// The client resends the 503 one. The new primary has no replica yet:
	// refused until a replacement has synced, then accepted.
	if resp := apiWait.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "repl-refused-wait")); resp.Status != http.StatusServiceUnavailable {
		t.Errorf("resend with no replica: %d %s, want 503", resp.Status, resp.Body)
	}
	replicaOf(t, replica.Port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// 202, or 409 when the refused resend above was stored on the new
		// primary (its WAIT failed, not its write): both mean it is held
		// now by the primary and a replica.
		resp := apiWait.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "repl-refused-wait"))
		if resp.Status == http.StatusAccepted || resp.Status == http.StatusConflict {
			t.Logf("resend once a replica is back: %d", resp.Status)
			break
		}
		if resp.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("resend once a replica is back: %d %s, want 202", resp.Status, resp.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	testenv.StartDispatcher(t, "worker", env...)
	for _, id := range []string{"repl-before-wait", "repl-before-nowait", "repl-refused-wait"} {
		apiWait.WaitState(t, id, "delivered", 20*time.Second)
	}
	time.Sleep(500 * time.Millisecond)
	if seen := idsSeen(rc.Requests()); seen["repl-acked-nowait"] != 0 || len(seen) != 3 {
		t.Errorf("receiver saw %v, want the three surviving deliveries once each", seen)
	}
}
