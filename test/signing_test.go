package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// signingKeyFile writes n fresh v1a keys, each after a "# created" line
// (the first dated 2026-01-01), and returns the file and the keys.
func signingKeyFile(t *testing.T, n int) (string, []signature.PrivateKey) {
	t.Helper()
	var b strings.Builder
	var keys []signature.PrivateKey
	for i := range n {
		k, _, err := signature.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "# created 2026-01-0%dT00:00:00Z\n%s\n", i+1, k.Reveal())
		keys = append(keys, k)
	}
	file := filepath.Join(t.TempDir(), "signing-keys")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, keys
}

func newSecret(t *testing.T) signature.Secret {
	t.Helper()
	s, err := signature.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signedDelivery(webhook, id string, secret signature.Secret) map[string]any {
	d := testenv.Delivery(webhook, id)
	d["signing"] = map[string]string{"secret": secret.Reveal()}
	return d
}

// nodeCase and nodeResult are payload/signature/testdata/interop/verify.js's
// input and output: verify.js checks v1 entries with the official
// standardwebhooks package and v1a entries with Node's crypto.verify.
type nodeCase struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	Timestamp  string   `json:"timestamp"`
	Signature  string   `json:"signature"`
	BodyB64    string   `json:"body_b64"`
	Secrets    []string `json:"secrets"`
	PublicKeys []string `json:"public_keys"`
}

type nodeResult struct {
	Name string `json:"name"`
	V1   []bool `json:"v1"`
	V1a  []bool `json:"v1a"`
}

// nodeVerify runs verify.js on cases. Without node or the pinned npm packages
// (npm ci in the interop folder) it skips, except under CI=true.
func nodeVerify(t *testing.T, cases []nodeCase) []nodeResult {
	t.Helper()
	node := testenv.LookPath(t, "node")
	dir := filepath.Join(testenv.ModuleRoot(t), "payload", "signature", "testdata", "interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks", "package.json")); err != nil {
		msg := "npm package standardwebhooks missing (run `npm ci` in payload/signature/testdata/interop): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "verify.js")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node verify.js: %v\n%s", err, stderr.String())
	}
	var results []nodeResult
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(cases) {
		t.Fatalf("verify.js answered %s for %d cases: %v", out, len(cases), err)
	}
	return results
}

// TestSignedDeliveriesVerifyWithNode: a delivery with a per-delivery secret
// and two provider keys fails twice, succeeds, and is redelivered. Every one
// of the four requests the TLS receiver captured carries webhook-id = the
// generation id, a webhook-timestamp of its own attempt (strictly rising:
// the retry steps are over a second), and a signature that the official
// standardwebhooks package (v1) and Node's crypto.verify (v1a) accept; each
// entry alone verifies with its own key only (rotation).
func TestSignedDeliveriesVerifyWithNode(t *testing.T) {
	if testing.Short() {
		t.Skip("retries over several seconds")
	}
	keyFile, keys := signingKeyFile(t, 2)
	secret, stranger := newSecret(t), newSecret(t)
	_, strangerPub, _ := signature.GenerateKey(nil)
	_, rc, d := startStack(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}, "RETRY_SCHEDULE=1100ms,1100ms,1100ms,1100ms,1100ms,1100ms,1100ms,1100ms,1100ms", "SIGNING_KEY_FILE="+keyFile)

	const id = "507f1f77.sig:1~a-b_c" // generation ids may hold . : ~ - _
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", signedDelivery(rc.URL+"/hook", id, secret)); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	rc.WaitCount(t, 3, 20*time.Second)
	d.WaitState(t, id, "delivered", 10*time.Second)
	// Into the next second, so that a fresh timestamp is a different one.
	time.Sleep(time.Until(reqs3Second(rc).Add(time.Second)))
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/"+id+"/redeliver", nil); resp.Status != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", resp.Status, resp.Body)
	}
	reqs := rc.WaitCount(t, 4, 15*time.Second)[:4]

	pubs := []string{keys[0].Public().String(), keys[1].Public().String(), strangerPub.String()}
	secrets := []string{secret.Reveal(), stranger.Reveal()}
	var cases []nodeCase
	var want []nodeResult
	var lastTS int64
	for i, r := range reqs {
		h := signature.FromHeader(r.Header)
		if h.ID != id || r.Header.Get("X-Media-Id") != id || r.Header.Get("X-Webhook-Source") != "artificial-studio" {
			t.Errorf("request %d: webhook-id %q, X-Media-Id %q: want %s on every attempt and the redelivery", i+1, h.ID, r.Header.Get("X-Media-Id"), id)
		}
		ts, err := strconv.ParseInt(h.Timestamp, 10, 64)
		if err != nil || ts < r.At.Unix()-2 || ts > r.At.Unix() {
			t.Errorf("request %d: webhook-timestamp %q, received at %d: not this attempt's time", i+1, h.Timestamp, r.At.Unix())
		}
		if ts <= lastTS {
			t.Errorf("request %d: webhook-timestamp %d not after the previous attempt's %d: not signed afresh", i+1, ts, lastTS)
		}
		lastTS = ts
		entries := strings.Split(h.Signature, " ")
		if len(entries) != 3 {
			t.Fatalf("request %d: webhook-signature %q, want v1 + two v1a entries", i+1, h.Signature)
		}
		add := func(name, sig string, v1, v1a []bool) {
			cases = append(cases, nodeCase{Name: name, ID: h.ID, Timestamp: h.Timestamp, Signature: sig,
				BodyB64: base64.StdEncoding.EncodeToString(r.Body), Secrets: secrets, PublicKeys: pubs})
			want = append(want, nodeResult{Name: name, V1: v1, V1a: v1a})
		}
		add(fmt.Sprintf("request %d", i+1), h.Signature, []bool{true, false}, []bool{true, true, false})
		add(fmt.Sprintf("request %d v1 alone", i+1), entries[0], []bool{true, false}, []bool{false, false, false})
		add(fmt.Sprintf("request %d first v1a alone", i+1), entries[1], []bool{false, false}, []bool{true, false, false})
		add(fmt.Sprintf("request %d second v1a alone", i+1), entries[2], []bool{false, false}, []bool{false, true, false})
	}
	for i, got := range nodeVerify(t, cases) {
		if got.Name != want[i].Name || !slices.Equal(got.V1, want[i].V1) || !slices.Equal(got.V1a, want[i].V1a) {
			t.Errorf("%s: node says v1 %v v1a %v; want v1 %v v1a %v (secrets: ours, stranger; keys: k1, k2, stranger)",
				want[i].Name, got.V1, got.V1a, want[i].V1, want[i].V1a)
		}
	}

	// The public keys to publish, with their ids and the key file's dates.
	var listed struct {
		Keys []struct {
			ID, Version, PublicKey string
			CreatedAt              *time.Time
		}
	}
	d.Call(t, http.MethodGet, "/v1/signing-keys", nil).JSON(t, &listed)
	if len(listed.Keys) != 2 {
		t.Fatalf("GET /v1/signing-keys: %+v", listed)
	}
	for i, k := range listed.Keys {
		if k.ID != keys[i].ID() || k.PublicKey != pubs[i] || k.Version != "v1a" || k.CreatedAt == nil || k.CreatedAt.Day() != i+1 {
			t.Errorf("key %d listed as %+v, want id %s, %s, created 2026-01-0%d", i, k, keys[i].ID(), pubs[i], i+1)
		}
	}
}

// reqs3Second is the whole second in which the receiver got its third request.
func reqs3Second(rc *testenv.Receiver) time.Time { return rc.Requests()[2].At.Truncate(time.Second) }

// TestUnsignedDeliveryHeadersExact: with no signing configured and no secret
// in the request, the receiver gets exactly the documented headers (and the
// Content-Length HTTP/1.1 adds), our User-Agent and no webhook-* header.
func TestUnsignedDeliveryHeadersExact(t *testing.T) {
	_, rc, d := startStack(t, nil)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-unsigned-1")); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	r := rc.WaitCount(t, 1, 10*time.Second)[0]
	var names []string
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"Content-Length", "Content-Type", "User-Agent", "X-Media-Id", "X-Webhook-Source"}; !slices.Equal(names, want) {
		t.Errorf("headers %v, want exactly %v", names, want)
	}
	if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "artificial-studio-webhooks/") {
		t.Errorf("User-Agent %q", ua)
	}
	if resp := d.Call(t, http.MethodGet, "/v1/signing-keys", nil); resp.Status != 200 || strings.TrimSpace(string(resp.Body)) != `{"keys":[]}` {
		t.Errorf("signing off: GET /v1/signing-keys = %d %s", resp.Status, resp.Body)
	}
}

// redisDump returns every key of the Redis at addr with its whole value
// (strings, hashes, lists, sets, sorted sets), read with raw RESP.
func redisDump(t *testing.T, addr string) map[string]string {
	t.Helper()
	keys, err := testenv.Command(addr, "KEYS", "*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys.([]any) {
		key := k.(string)
		typ, err := testenv.Command(addr, "TYPE", key)
		if err != nil {
			t.Fatal(err)
		}
		var reply any
		switch typ {
		case "string":
			reply, err = testenv.Command(addr, "GET", key)
		case "hash":
			reply, err = testenv.Command(addr, "HGETALL", key)
		case "list":
			reply, err = testenv.Command(addr, "LRANGE", key, "0", "-1")
		case "set":
			reply, err = testenv.Command(addr, "SMEMBERS", key)
		case "zset":
			reply, err = testenv.Command(addr, "ZRANGE", key, "0", "-1", "WITHSCORES")
		default:
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		out[key] = fmt.Sprint(reply)
	}
	return out
}

// TestSigningSecretNeverLeaks: a per-delivery secret (single and batch) is
// stored under webhook:secret:{id} and nowhere else: not in the logs, GET,
// the failed listing, the failed record, /metrics, asynqmon's task views, the
// task payload or any other Redis key, error bodies, or what the receiver
// got (only the HMAC of it).
func TestSigningSecretNeverLeaks(t *testing.T) {
	keyFile, _ := signingKeyFile(t, 1)
	const monitoringPassword = "monitoring-pw-3f9c"
	redis, rc, d := startStack(t, testenv.Status(http.StatusInternalServerError), faultRetries, "SIGNING_KEY_FILE="+keyFile,
		"MONITORING_PASSWORD="+monitoringPassword)
	secret := newSecret(t)
	mark := strings.TrimPrefix(secret.Reveal(), signature.PrefixSecret)[:20] // recognisable, whatever the encoding around it

	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", signedDelivery(rc.URL, "leak-sig-1", secret)); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	bad := signedDelivery(rc.URL, "leak-sig-3", secret)
	bad["generation"].(map[string]any)["type"] = "hologram"
	batch := d.Call(t, http.MethodPost, "/v1/deliveries/batch", map[string]any{"deliveries": []any{signedDelivery(rc.URL, "leak-sig-2", secret), bad}})
	if batch.Status != 200 || !strings.Contains(string(batch.Body), `"status":202`) || !strings.Contains(string(batch.Body), `"status":400`) {
		t.Fatalf("batch: %d %s", batch.Status, batch.Body)
	}
	d.WaitState(t, "leak-sig-1", "failed", 30*time.Second)
	d.WaitState(t, "leak-sig-2", "failed", 30*time.Second)

	errorBodies := []string{string(batch.Body)}
	for _, body := range []any{
		signedDelivery(rc.URL, "leak-sig-1", secret), // 409
		map[string]any{"webhook": rc.URL, "generation": testenv.Generation("leak-sig-4"), "signing": map[string]any{"secret": secret.Reveal() + "!"}},
		map[string]any{"webhook": rc.URL, "generation": testenv.Generation("leak-sig-5"), "signing": map[string]any{"secret": strings.TrimPrefix(secret.Reveal(), "whsec_")}},
		map[string]any{"webhook": rc.URL, "generation": testenv.Generation("leak-sig-6"), "signing": map[string]any{"secret": secret.Reveal(), "x": 1}},
		map[string]any{"webhook": rc.URL, "generation": testenv.Generation("leak-sig-7"), "signing": secret.Reveal()},
		map[string]any{"webhook": "https://10.1.2.3/h", "generation": testenv.Generation("leak-sig-8"), "signing": map[string]any{"secret": secret.Reveal()}},
	} {
		resp := d.Call(t, http.MethodPost, "/v1/deliveries", body)
		if resp.Status < 400 {
			t.Fatalf("want an error answer, got %d %s", resp.Status, resp.Body)
		}
		errorBodies = append(errorBodies, string(resp.Body))
	}
	resp := d.Call(t, http.MethodPost, "/v1/webhooks/test", map[string]any{"url": "https://10.1.2.3/h", "signing": map[string]any{"secret": secret.Reveal()}})
	errorBodies = append(errorBodies, string(resp.Body))

	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, d.APIURL+path, nil)
		if strings.HasPrefix(path, "/monitoring/") {
			req.SetBasicAuth("ops", monitoringPassword)
		} else {
			req.Header.Set("Authorization", "Bearer "+testenv.Token)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		if r.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, r.StatusCode, b.String())
		}
		return b.String()
	}
	dump := redisDump(t, redis.Addr())
	var received strings.Builder
	for _, r := range rc.Requests() {
		fmt.Fprintf(&received, "%v %s\n", r.Header, r.Body)
	}
	places := map[string]string{
		"log":                    d.Logs(),
		"GET delivery":           get("/v1/deliveries/leak-sig-1"),
		"GET failed list":        get("/v1/deliveries?state=failed"),
		"/metrics":               string(testenv.Call(t, http.MethodGet, d.MetricsURL+"/metrics", "", nil).Body),
		"asynqmon archived list": get("/monitoring/api/queues/webhooks/archived_tasks"),
		"error bodies":           strings.Join(errorBodies, "\n"),
		"receiver":               received.String(),
	}
	// Positive controls: the searched places hold the deliveries.
	for where, must := range map[string]string{"asynqmon archived list": "leak-sig-1", "GET failed list": "leak-sig-2", "receiver": "leak-sig-1", "log": "leak-sig-1"} {
		if !strings.Contains(places[where], must) {
			t.Fatalf("%s does not show %s: the search would prove nothing\n%.1500s", where, must, places[where])
		}
	}
	if !strings.Contains(dump["webhook:secret:leak-sig-1"], mark) || !strings.Contains(dump["webhook:secret:leak-sig-2"], mark) {
		t.Fatal("the store does not hold the secret where it should: the search would prove nothing")
	}
	if rec := dump["webhook:failed:leak-sig-1"]; !strings.Contains(rec, `"signed":true`) {
		t.Errorf("failed record %q does not say signed", rec)
	}
	for key, value := range dump {
		if strings.HasPrefix(key, "webhook:secret:") {
			continue
		}
		places["redis key "+key] = value
	}
	if _, ok := places["redis key asynq:{webhooks}:t:leak-sig-1"]; !ok {
		t.Fatal("no asynq task hash for leak-sig-1 in Redis: the payload search would prove nothing")
	}
	for where, text := range places {
		if strings.Contains(text, mark) {
			t.Errorf("%s contains the per-delivery secret", where)
		}
	}
}

// TestWebhookTestSend: POST /v1/webhooks/test makes one real, guarded,
// signed attempt and answers what a settings page shows, for a 200, a 500,
// a slow receiver, an expired certificate and a refused connection; the
// same destination again within 10 s is a 429; nothing is queued or logged
// as a delivery. `dispatcher test-send` does the same from the command line.
func TestWebhookTestSend(t *testing.T) {
	keyFile, keys := signingKeyFile(t, 1)
	ok := testenv.NewReceiver(t, nil)
	failing := testenv.NewReceiver(t, testenv.Status(http.StatusInternalServerError))
	slow := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	ca := newTestCA(t, "signing-test CA")
	expiredAt := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	expiredCert := ca.leaf(t, time.Now().Add(-72*time.Hour), expiredAt)
	expired, expiredHits := hostileServer(t, &expiredCert, func(w http.ResponseWriter, _ *http.Request) {})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "https://" + ln.Addr().String() + "/hook"
	ln.Close()

	var caPEM []byte
	for _, f := range []string{ok.CAFile, failing.CAFile, slow.CAFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		caPEM = append(caPEM, b...)
	}
	caFile := filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(caFile, append(caPEM, ca.pem()...), 0o600); err != nil {
		t.Fatal(err)
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + caFile, "SIGNING_KEY_FILE=" + keyFile, "DELIVERY_TIMEOUT=1s"}
	d := testenv.StartDispatcher(t, "all", env...)

	type result struct {
		ID               string
		OK               bool
		Status           int
		DurationMs       float64
		Outcome          string
		Error            string
		TLS              *struct{ Version, CertNotAfter string }
		AnsweredWithin5s bool
	}
	tests := []struct {
		name     string
		url      string
		http     int
		ok       bool
		status   int
		outcome  string
		within   bool
		tls      bool
		minMs    float64
		checkTLS func(v, notAfter string) bool
	}{
		{"200", ok.URL + "/hook", 200, true, 200, "delivered", true, true, 0, func(v, na string) bool { return strings.HasPrefix(v, "TLS 1.") && na != "" }},
		{"500", failing.URL, 200, false, 500, "http_status", true, true, 0, nil},
		{"slow", slow.URL, 200, false, 0, "timeout", false, false, 1000, nil},
		{"expired certificate", expired.URL, 200, false, 0, "tls", false, true, 0, func(v, na string) bool { return v == "" && na == expiredAt.Format(time.RFC3339) }},
		{"connection refused", refused, 200, false, 0, "connect", false, false, 0, nil},
		{"guard refuses", "https://169.254.169.254/latest", 422, false, 0, "blocked", false, false, 0, nil},
	}
	for _, tt := range tests {
		resp := d.Call(t, http.MethodPost, "/v1/webhooks/test", map[string]any{"url": tt.url})
		var r result
		if err := json.Unmarshal(resp.Body, &r); err != nil || resp.Status != tt.http {
			t.Errorf("%s: %d %s, want %d", tt.name, resp.Status, resp.Body, tt.http)
			continue
		}
		if r.OK != tt.ok || r.Status != tt.status || r.Outcome != tt.outcome || r.AnsweredWithin5s != tt.within ||
			(r.TLS != nil) != tt.tls || (r.Error == "") != tt.ok || r.DurationMs < tt.minMs {
			t.Errorf("%s: %s", tt.name, resp.Body)
		}
		if tt.checkTLS != nil && r.TLS != nil && !tt.checkTLS(r.TLS.Version, r.TLS.CertNotAfter) {
			t.Errorf("%s: tls %+v", tt.name, *r.TLS)
		}
		if tt.http == 200 && (!strings.HasPrefix(r.ID, "test_") || len(r.ID) != len("test_")+24) {
			t.Errorf("%s: id %q, want test_ + 24 hex digits", tt.name, r.ID)
		}
	}
	if expiredHits.Load() != 0 {
		t.Error("the expired-certificate receiver got a request")
	}

	// The 200 receiver got one signed sample webhook of the documented shape.
	got := ok.Requests()
	if len(got) != 1 {
		t.Fatalf("200 receiver got %d requests, want 1", len(got))
	}
	var g map[string]any
	if err := json.Unmarshal(got[0].Body, &g); err != nil || !strings.HasPrefix(fmt.Sprint(g["id"]), "test_") || g["status"] != "success" || g["type"] != "image" {
		t.Errorf("sample body %s", got[0].Body)
	}
	if err := signature.Verify(signature.FromHeader(got[0].Header), got[0].Body, got[0].At, 0, keys[0].Public()); err != nil {
		t.Errorf("test webhook signature: %v", err)
	}

	// Rate limit: the same destination again within 10 s, even another path.
	for _, u := range []string{ok.URL + "/hook", ok.URL + "/other"} {
		if resp := d.Call(t, http.MethodPost, "/v1/webhooks/test", map[string]any{"url": u}); resp.Status != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("second test of %s: %d %s, want 429 with Retry-After", u, resp.Status, resp.Body)
		}
	}
	if n := ok.Count(); n != 1 {
		t.Errorf("rate-limited test sends reached the receiver: %d requests", n)
	}

	// Nothing queued: no asynq task, no attempt log, no retry of the 500.
	time.Sleep(500 * time.Millisecond)
	for key := range redisDump(t, redis.Addr()) {
		if strings.HasPrefix(key, "asynq:{webhooks}:t:") || strings.HasPrefix(key, "webhook:attempts:") || strings.HasPrefix(key, "webhook:secret:") {
			t.Errorf("a test send left %s in Redis", key)
		}
	}
	if n := failing.Count(); n != 1 {
		t.Errorf("the 500 receiver got %d requests, want 1 (test sends are not retried)", n)
	}

	// The command line: same answer, exit 0 on 200 and 1 otherwise.
	cli := func(url string) (result, int) {
		cmd := exec.Command(testenv.Binary(t), "test-send", url)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "URLGUARD_ALLOW_CIDRS=127.0.0.1/32"}, env...)
		out, err := cmd.Output()
		var r result
		if jerr := json.Unmarshal(out, &r); jerr != nil {
			t.Fatalf("test-send %s printed %q (%v)", url, out, err)
		}
		return r, cmd.ProcessState.ExitCode()
	}
	if r, code := cli(ok.URL + "/cli"); !r.OK || r.Status != 200 || code != 0 {
		t.Errorf("test-send to the 200 receiver: %+v, exit %d", r, code)
	}
	if r, code := cli(failing.URL); r.OK || r.Status != 500 || code != 1 {
		t.Errorf("test-send to the 500 receiver: %+v, exit %d", r, code)
	}
	if err := signature.Verify(signature.FromHeader(ok.Requests()[1].Header), ok.Requests()[1].Body, ok.Requests()[1].At, 0, keys[0].Public()); err != nil {
		t.Errorf("test-send signature: %v", err)
	}
}

// TestReceiverSnippetsInReadme keeps the README's Express receivers equal to
// the files payload/signature's TestExpressReceivers runs.
func TestReceiverSnippetsInReadme(t *testing.T) {
	root := testenv.ModuleRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"receiver-v1.js", "receiver-v1a.js"} {
		src, err := os.ReadFile(filepath.Join(root, "payload", "signature", "testdata", "interop", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, []byte("```js\n"+string(src)+"```\n")) {
			t.Errorf("README.md lacks %s verbatim in a ```js block", f)
		}
	}
}
