package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// cliResult is one run of the built binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runBinary runs the dispatcher binary with exactly env (plus PATH).
func runBinary(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return cliResult{out.String(), errOut.String(), code}
}

// listIDs pages through GET /v1/deliveries with query q and returns every
// id and the number of pages.
func listIDs(t *testing.T, d *testenv.Dispatcher, q url.Values) (ids []string, pages int) {
	t.Helper()
	cursor := ""
	for pages < 50 {
		q.Set("cursor", cursor)
		resp := d.Call(t, http.MethodGet, "/v1/deliveries?"+q.Encode(), nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("list %s: %d %s", q.Encode(), resp.Status, resp.Body)
		}
		var page struct {
			Deliveries []dispatcher.Status `json:"deliveries"`
			Next       string              `json:"nextCursor"`
		}
		resp.JSON(t, &page)
		pages++
		for _, s := range page.Deliveries {
			ids = append(ids, s.ID)
		}
		if page.Next == "" {
			sort.Strings(ids)
			return ids, pages
		}
		cursor = page.Next
	}
	t.Fatalf("list %s: more than 50 pages", q.Encode())
	return nil, 0
}

func idRange(prefix string, from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("%s-%02d", prefix, i))
	}
	sort.Strings(ids)
	return ids
}

// TestOperatorListingsStatsCancelRedeliver works on a backlog no worker
// takes (an api process alone): pending deliveries to two customers,
// scheduled ones enqueued with asynq directly. It lists them by state and by
// host with paging, checks the stats against the known mix, cancels one
// customer's deliveries after a dry run, and redelivers them after a dry run
// whose count the real run then moves.
func TestOperatorListingsStatsCancelRedeliver(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+redis.URL())
	cliEnv := []string{"REDIS_URL=" + redis.URL()}

	enqueue := func(id, webhook string) {
		t.Helper()
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(webhook, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue %s: %d %s", id, resp.Status, resp.Body)
		}
	}
	for _, id := range idRange("a", 0, 7) {
		enqueue(id, "https://hooks-a.example.com/hook?k=1")
	}
	time.Sleep(20 * time.Millisecond)
	between := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	for _, id := range idRange("b", 0, 3) {
		enqueue(id, "https://Hooks-B.Example.com:8443/x")
	}
	// Scheduled: asynq holds them for later (the dispatcher itself schedules
	// nothing, but asynq's tools can, and the listing must show them).
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: redis.Addr()})
	defer client.Close()
	for _, id := range idRange("s", 0, 2) {
		task, err := dispatcher.NewTask(dispatcher.Delivery{ID: id, Webhook: "https://hooks-a.example.com/later", EnqueuedAt: time.Now().UTC(), Body: json.RawMessage(`{"id":"` + id + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task, asynq.TaskID(id), asynq.Queue("webhooks"), asynq.ProcessIn(time.Hour), asynq.MaxRetry(9)); err != nil {
			t.Fatal(err)
		}
	}

	// Listings by state and by host (any case, trailing dot), paged.
	for _, c := range []struct {
		q     url.Values
		want  []string
		pages int
	}{
		{url.Values{"state": {"pending"}, "limit": {"3"}}, append(idRange("a", 0, 7), idRange("b", 0, 3)...), 4},
		{url.Values{"state": {"pending"}, "host": {"HOOKS-A.example.com."}, "limit": {"2"}}, idRange("a", 0, 7), 4},
		{url.Values{"state": {"pending"}, "host": {"hooks-b.example.com"}}, idRange("b", 0, 3), 1},
		{url.Values{"state": {"pending"}, "since": {between.Format(time.RFC3339Nano)}}, idRange("b", 0, 3), 1},
		{url.Values{"state": {"scheduled"}, "host": {"hooks-a.example.com"}}, idRange("s", 0, 2), 1},
		{url.Values{"state": {"scheduled"}, "host": {"hooks-b.example.com"}}, nil, 1},
		{url.Values{"state": {"retrying"}}, nil, 1},
		{url.Values{"state": {"active"}}, nil, 1},
		{url.Values{"state": {"delivered"}}, nil, 1},
		{url.Values{"state": {"failed"}}, nil, 1},
	} {
		got, pages := listIDs(t, d, c.q)
		sort.Strings(c.want)
		if strings.Join(got, ",") != strings.Join(c.want, ",") || pages != c.pages {
			t.Errorf("list %s: %d pages %v, want %d pages %v", c.q.Encode(), pages, got, c.pages, c.want)
		}
	}
	if resp := d.Call(t, http.MethodGet, "/v1/deliveries?state=pending&cursor=garbage", nil); resp.Status != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", resp.Status)
	}

	// The CLI lists the same.
	r := runBinary(t, cliEnv, "deliveries", "list", "--state", "pending", "--host", "hooks-b.example.com", "--json")
	var page struct {
		Deliveries []dispatcher.Status `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &page); r.code != 0 || err != nil || len(page.Deliveries) != 3 {
		t.Fatalf("cli list --json: %+v", r)
	}
	r = runBinary(t, cliEnv, "deliveries", "list", "--state", "pending", "--limit", "4")
	if r.code != 0 || !strings.Contains(r.stdout, "4 shown; next page: dispatcher deliveries list --state pending --cursor ") || !strings.Contains(r.stdout, "hooks-a.example.com") {
		t.Errorf("cli list table:\n%s%s", r.stdout, r.stderr)
	}

	// Stats against the known mix.
	var stats dispatcher.QueueStats
	resp := d.Call(t, http.MethodGet, "/v1/queue", nil)
	resp.JSON(t, &stats)
	if resp.Status != http.StatusOK || stats.Counts[dispatcher.StatePending] != 10 || stats.Counts[dispatcher.StateScheduled] != 2 ||
		stats.Counts[dispatcher.StateFailed] != 0 || !stats.Complete || stats.Scanned != 10 || stats.OldestPendingSeconds <= 0 {
		t.Fatalf("GET /v1/queue: %d %s", resp.Status, resp.Body)
	}
	if len(stats.TopDestinations) != 2 || stats.TopDestinations[0].Host != "hooks-a.example.com" || stats.TopDestinations[0].Pending != 7 ||
		stats.TopDestinations[1].Host != "hooks-b.example.com" || stats.TopDestinations[1].Backlog != 3 {
		t.Errorf("top destinations: %+v", stats.TopDestinations)
	}
	r = runBinary(t, cliEnv, "queue", "stats")
	if r.code != 0 || !strings.Contains(r.stdout, "hooks-a.example.com") || !strings.Contains(r.stdout, "all 10 pending and retrying deliveries scanned") {
		t.Errorf("queue stats:\n%s%s", r.stdout, r.stderr)
	}

	// Cancel customer b: a dry run counts and changes nothing.
	r = runBinary(t, cliEnv, "deliveries", "cancel", "--host", "hooks-b.example.com", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "dry run: 3 ") {
		t.Fatalf("cancel --dry-run: %+v", r)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"pending"}, "host": {"hooks-b.example.com"}}); len(got) != 3 {
		t.Fatalf("dry run changed something: pending b = %v", got)
	}
	r = runBinary(t, cliEnv, "deliveries", "cancel", "--host", "hooks-b.example.com")
	if r.code != 0 || !strings.Contains(r.stdout, "cancelled 3 deliveries") {
		t.Fatalf("cancel --host: %+v", r)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"pending"}, "host": {"hooks-b.example.com"}}); len(got) != 0 {
		t.Errorf("still pending after cancel: %v", got)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"failed"}, "host": {"hooks-b.example.com"}}); strings.Join(got, ",") != strings.Join(idRange("b", 0, 3), ",") {
		t.Errorf("failed after cancel: %v", got)
	}
	st := d.WaitState(t, "b-00", "failed", time.Second)
	if st["lastError"] != "cancelled" {
		t.Errorf("cancelled delivery: %v", st)
	}
	// The API cancels one by id; twice is a conflict, unknown is 404.
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/s-00/cancel", nil); resp.Status != http.StatusOK {
		t.Errorf("cancel scheduled s-00: %d %s", resp.Status, resp.Body)
	}
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/s-00/cancel", nil); resp.Status != http.StatusConflict {
		t.Errorf("cancel s-00 again: %d %s", resp.Status, resp.Body)
	}
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/nope/cancel", nil); resp.Status != http.StatusNotFound {
		t.Errorf("cancel unknown: %d %s", resp.Status, resp.Body)
	}
	r = runBinary(t, cliEnv, "deliveries", "cancel", "a-00")
	if r.code != 0 || !strings.Contains(r.stdout, "cancelled a-00") {
		t.Errorf("cli cancel ID: %+v", r)
	}

	// Redeliver customer b: the dry run's count is what the real run moves.
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	r = runBinary(t, cliEnv, "deliveries", "redeliver", "--host", "hooks-b.example.com", "--since", since, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "dry run: 3 failed deliveries match; nothing changed") {
		t.Fatalf("redeliver --dry-run: %+v", r)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"failed"}}); len(got) != 5 {
		t.Fatalf("dry run changed the failed list: %v", got)
	}
	var dry map[string]any
	resp = d.Call(t, http.MethodPost, "/v1/deliveries/redeliver", map[string]any{"state": "failed", "host": "hooks-b.example.com", "dryRun": true})
	resp.JSON(t, &dry)
	if resp.Status != http.StatusOK || dry["matched"] != float64(3) || dry["queued"] != float64(0) {
		t.Errorf("API dry run: %d %s", resp.Status, resp.Body)
	}
	r = runBinary(t, cliEnv, "deliveries", "redeliver", "--host", "hooks-b.example.com", "--since", since)
	if r.code != 0 || !strings.Contains(r.stdout, "queued 3 failed deliveries again (3 matched, 0 skipped") || !strings.Contains(r.stderr, "progress: redelivered 3 of 3") {
		t.Fatalf("redeliver --host: %+v", r)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"pending"}, "host": {"hooks-b.example.com"}}); strings.Join(got, ",") != strings.Join(idRange("b", 0, 3), ",") {
		t.Errorf("pending b after redelivery: %v", got)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"failed"}}); strings.Join(got, ",") != "a-00,s-00" {
		t.Errorf("failed after redelivering b: %v, want a-00,s-00", got)
	}
	// --until excludes what failed later; the API takes the same filters.
	resp = d.Call(t, http.MethodPost, "/v1/deliveries/redeliver", map[string]any{"state": "failed", "until": since})
	resp.JSON(t, &dry)
	if resp.Status != http.StatusOK || dry["queued"] != float64(0) || dry["matched"] != float64(0) {
		t.Errorf("redeliver until an hour ago: %d %s", resp.Status, resp.Body)
	}
}

// TestOperatorViewWithWorker: a running worker gives delivered, active and
// retrying deliveries. deliveredAt keeps milliseconds (the attempt log's
// time), show honours RETRY_SCHEDULE for nextAttemptAt, stats name the last
// outcome, and a cancel racing an in-flight attempt is refused without
// losing the delivery.
func TestOperatorViewWithWorker(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	release := make(chan struct{})
	ok := testenv.NewReceiver(t, nil)
	slow := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	})
	failing := testenv.NewReceiver(t, testenv.Status(http.StatusBadGateway))
	const sched = "RETRY_SCHEDULE=1h,1h,1h,1h,1h,1h,1h,1h,1h"
	d := testenv.StartDispatcher(t, "all", "REDIS_URL="+redis.URL(), "WEBHOOK_CA_FILE="+ok.CAFile, sched, "DELIVERY_TIMEOUT=30s")
	for id, rc := range map[string]*testenv.Receiver{"w-ok": ok, "w-slow": slow, "w-fail": failing} {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue %s: %d", id, resp.Status)
		}
	}
	delivered := d.WaitState(t, "w-ok", "delivered", 15*time.Second)
	d.WaitState(t, "w-slow", "active", 15*time.Second)
	d.WaitState(t, "w-fail", "retrying", 15*time.Second)

	for state, want := range map[string]string{"delivered": "w-ok", "active": "w-slow", "retrying": "w-fail"} {
		if got, _ := listIDs(t, d, url.Values{"state": {state}, "host": {"127.0.0.1"}}); strings.Join(got, ",") != want {
			t.Errorf("list %s: %v, want %s", state, got, want)
		}
	}
	// deliveredAt is the delivered attempt's end, milliseconds included.
	attempts := delivered["attempts"].([]any)
	if last := attempts[len(attempts)-1].(map[string]any); delivered["deliveredAt"] == nil || !sameInstant(t, delivered["deliveredAt"].(string), last["endedAt"].(string)) {
		t.Errorf("deliveredAt %v, want the attempt's endedAt %v", delivered["deliveredAt"], last["endedAt"])
	}

	// The CLI computes the next retry with RETRY_SCHEDULE (1h), not the published 5s.
	r := runBinary(t, []string{"REDIS_URL=" + redis.URL(), sched}, "deliveries", "show", "w-fail", "--json")
	var st dispatcher.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil || st.NextAttemptAt == nil || len(st.Attempts) != 1 {
		t.Fatalf("show w-fail: %+v", r)
	}
	if gap := st.NextAttemptAt.Sub(st.Attempts[0].EndedAt); gap != time.Hour {
		t.Errorf("nextAttemptAt is %s after the failed attempt, want 1h (RETRY_SCHEDULE)", gap)
	}

	var stats dispatcher.QueueStats
	d.Call(t, http.MethodGet, "/v1/queue", nil).JSON(t, &stats)
	if stats.Counts[dispatcher.StateActive] != 1 || stats.Counts[dispatcher.StateRetrying] != 1 || stats.Counts[dispatcher.StateDelivered] != 1 ||
		len(stats.TopDestinations) != 1 || stats.TopDestinations[0].Retrying != 1 ||
		stats.TopDestinations[0].LastOutcome != dispatcher.OutcomeHTTPStatus || stats.TopDestinations[0].LastStatus != http.StatusBadGateway {
		t.Errorf("stats: %+v", stats)
	}

	// Cancelling the delivery in flight is refused; the attempt finishes.
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/w-slow/cancel", nil); resp.Status != http.StatusConflict {
		t.Errorf("cancel in flight: %d %s, want 409", resp.Status, resp.Body)
	}
	close(release)
	d.WaitState(t, "w-slow", "delivered", 15*time.Second)

	// Cancelling the retrying one ends it as failed: no further attempt.
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/w-fail/cancel", nil); resp.Status != http.StatusOK {
		t.Fatalf("cancel retrying: %d %s", resp.Status, resp.Body)
	}
	cancelled := d.WaitState(t, "w-fail", "failed", time.Second)
	if cancelled["lastError"] != "cancelled" || len(cancelled["attempts"].([]any)) != 1 {
		t.Errorf("cancelled: %v", cancelled)
	}
	if got, _ := listIDs(t, d, url.Values{"state": {"failed"}}); strings.Join(got, ",") != "w-fail" {
		t.Errorf("failed list: %v", got)
	}
	// Redeliverable: a fresh cycle starts at once.
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/w-fail/redeliver", nil); resp.Status != http.StatusAccepted {
		t.Fatalf("redeliver cancelled: %d %s", resp.Status, resp.Body)
	}
	failing.WaitCount(t, 2, 15*time.Second)
}

func sameInstant(t *testing.T, a, b string) bool {
	t.Helper()
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}

// TestAPIAndWorkerSideBySideWithDefaults starts api and worker on one host
// with the default addresses: both become ready, each with its own /readyz.
// A second worker clashes on METRICS_ADDR and exits 1 before "worker
// started", naming the setting.
func TestAPIAndWorkerSideBySideWithDefaults(t *testing.T) {
	for _, port := range []int{8080, 9090, 9091} {
		if c, err := netDial(port); err == nil {
			c.Close()
			t.Skipf("port %d is in use on this machine: the default addresses cannot be tested here", port)
		}
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	env := []string{"REDIS_URL=" + redis.URL(), "API_TOKEN=" + testenv.Token}
	start := func(mode string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(testenv.Binary(t), mode)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, &logs
	}
	_, apiLogs := start("api")
	_, workerLogs := start("worker")
	for _, u := range []string{"http://127.0.0.1:8080/readyz", "http://127.0.0.1:9091/readyz", "http://127.0.0.1:9090/readyz", "http://127.0.0.1:9090/metrics", "http://127.0.0.1:9091/metrics"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %v\napi:\n%s\nworker:\n%s", u, err, apiLogs, workerLogs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r := runBinary(t, env, "worker")
	if r.code != 1 || !strings.Contains(r.stderr, "METRICS_ADDR") || strings.Contains(r.stdout, "worker started") {
		t.Errorf("second worker: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

func netDial(port int) (net.Conn, error) {
	return net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
}

// TestSecretsNeverPrinted puts a recognisable token and Redis password in
// the environment the documented way (API_TOKEN_FILE, REDIS_URL with a
// password) and looks for them in -h, a mistyped flag's output, the logs
// (Redis killed included: go-redis's own messages go to the JSON log, and
// "redis unreachable" names the address only), the process's command line
// and pprof, which serves no /debug/pprof/cmdline.
func TestSecretsNeverPrinted(t *testing.T) {
	const token, password = "tok-RECOGNISABLE-7d1e93", "pw-RECOGNISABLE-c55b02"
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	if out, err := redis.Do("CONFIG", "SET", "requirepass", password); err != nil || out != "OK" {
		t.Fatalf("set a Redis password: %q %v", out, err)
	}
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	redisURL := "redis://:" + password + "@" + redis.Addr() + "/0"
	secretEnv := []string{"REDIS_URL=" + redisURL, "API_TOKEN=" + token}
	leaks := func(what, text string) {
		t.Helper()
		if strings.Contains(text, token) || strings.Contains(text, password) {
			t.Errorf("%s shows a secret:\n%s", what, text)
		}
	}
	for _, args := range [][]string{{"-h"}, {"all", "-h"}, {"api", "--help"}, {"worker", "-h"}, {"deliveries", "list", "-h"}} {
		r := runBinary(t, secretEnv, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usage") {
			t.Errorf("%v: exit %d %s", args, r.code, r.stderr)
		}
		leaks(strings.Join(args, " "), r.stdout+r.stderr)
	}
	for _, args := range [][]string{{"all", "-wroker-concurrency", "2"}, {"api", "-x"}, {"deliveries", "list", "--nope"}} {
		r := runBinary(t, secretEnv, args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
		leaks(strings.Join(args, " "), r.stdout+r.stderr)
	}

	pprofAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	d := testenv.StartDispatcher(t, "all", "REDIS_URL="+redisURL, "API_TOKEN=", "API_TOKEN_FILE="+tokenFile,
		"PPROF=true", "PPROF_ADDR="+pprofAddr)
	// The harness token is not this one: the file's token is in force.
	if resp := testenv.Call(t, http.MethodGet, d.APIURL+"/v1/deliveries?state=failed", token, nil); resp.Status != http.StatusOK {
		t.Fatalf("token from API_TOKEN_FILE not accepted: %d %s", resp.Status, resp.Body)
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(d.PID()) + "/cmdline")
	if err == nil {
		leaks("ps (command line)", string(cmdline))
	}
	resp := testenv.Call(t, http.MethodGet, "http://"+pprofAddr+"/debug/pprof/", "", nil)
	if resp.Status != http.StatusOK {
		t.Errorf("pprof index on PPROF_ADDR: %d", resp.Status)
	}
	resp = testenv.Call(t, http.MethodGet, "http://"+pprofAddr+"/debug/pprof/cmdline", "", nil)
	if resp.Status != http.StatusNotFound {
		t.Errorf("/debug/pprof/cmdline answered %d, want 404", resp.Status)
	}
	leaks("pprof cmdline", string(resp.Body))
	if resp := testenv.Call(t, http.MethodGet, d.MetricsURL+"/debug/pprof/", "", nil); resp.Status != http.StatusNotFound {
		t.Errorf("pprof on METRICS_ADDR: %d, want 404 (own address only)", resp.Status)
	}

	redis.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(d.Logs(), `"redis unreachable"`) || !strings.Contains(d.Logs(), `"go-redis"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no redis unreachable / go-redis lines in the log:\n%s", d.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	logs := d.Logs()
	leaks("logs", logs)
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("a log line outside the JSON log: %q", line)
			continue
		}
		if entry["msg"] == "redis unreachable" && entry["redis_addr"] != redis.Addr() {
			t.Errorf("redis unreachable names %v, want %s", entry["redis_addr"], redis.Addr())
		}
	}
}
