package signature_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// interopDir holds verify.js, the README's receivers, serve.js and the pinned
// npm dependencies (package-lock.json; .ci/run runs npm ci there).
const interopDir = "testdata/interop"

// nodeOrSkip returns the node binary once node and the npm packages are
// installed. Without them it skips, except under CI=true, where a missing
// node or node_modules is a failure.
func nodeOrSkip(tb testing.TB) string {
	tb.Helper()
	node := testenv.LookPath(tb, "node")
	for _, pkg := range []string{"standardwebhooks", "express"} {
		if _, err := os.Stat(filepath.Join(interopDir, "node_modules", pkg, "package.json")); err != nil {
			msg := fmt.Sprintf("npm package %s missing (run `npm ci` in payload/signature/%s): %v", pkg, interopDir, err)
			if os.Getenv("CI") == "true" {
				tb.Fatal(msg)
			}
			tb.Skip(msg)
		}
	}
	return node
}

// nodeCase is one webhook for verify.js, with what it must answer.
type nodeCase struct {
	Name       string   `json:"name"`
	ID         string   `json:"id"`
	Timestamp  string   `json:"timestamp"`
	Signature  string   `json:"signature"`
	BodyB64    string   `json:"body_b64"`
	Secrets    []string `json:"secrets"`
	PublicKeys []string `json:"public_keys"`
	wantV1     []bool   // per secret
	wantV1a    []bool   // per public key
}

type nodeResult struct {
	Name string `json:"name"`
	V1   []bool `json:"v1"`
	V1a  []bool `json:"v1a"`
}

// Interop bodies: the provider's documented body, non-ASCII text, pretty
// JSON with a trailing newline, and a large one.
var interopBodies = map[string][]byte{
	"provider": body,
	"unicode":  []byte(`{"id":"gen_ünï","prompt":"Berge im Morgengrauen – 山の夜明け 🏔️ 👩‍🚀 مرحبا e` + "\u0301" + `","escaped":"\u2028\ud83d\ude00","nul":"\u0000"}`),
	"pretty":   []byte("{\n  \"id\": \"507f1f77bcf86cd799439011\",\n  \"status\": \"success\"\n}\n"),
	"large":    []byte(`{"output":"` + strings.Repeat("0123456789abcdef", 8192) + `"}`),
}

func TestInteropNode(t *testing.T) {
	node := nodeOrSkip(t)
	k1, pub1 := mustKey(t)
	k2, pub2 := mustKey(t)
	_, stranger := mustKey(t)
	s1, s2, strangerSecret := mustSecret(t), mustSecret(t), mustSecret(t)
	pubs := []string{pub1.String(), pub2.String(), stranger.String()}
	secrets := []string{s1.Reveal(), s2.Reveal(), strangerSecret.Reveal()}

	var cases []nodeCase
	// add signs body now (a fresh timestamp per case) with keys and secs, lets
	// edit change what is sent, and expects the given answers per trusted key.
	add := func(name string, body []byte, keys []signature.PrivateKey, secs []signature.Secret,
		edit func(*signature.Headers, *[]byte), wantV1, wantV1a []bool) {
		h, err := signature.Signer{Keys: keys}.Sign("msg_"+strings.ReplaceAll(name, " ", "_"), time.Now(), body, secs...)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			body = slices.Clone(body)
			edit(&h, &body)
		}
		cases = append(cases, nodeCase{
			Name: name, ID: h.ID, Timestamp: h.Timestamp, Signature: h.Signature,
			BodyB64: base64.StdEncoding.EncodeToString(body),
			Secrets: secrets, PublicKeys: pubs, wantV1: wantV1, wantV1a: wantV1a,
		})
	}
	none := []bool{false, false, false}
	all := []signature.PrivateKey{k1, k2}
	allSecrets := []signature.Secret{s1, s2}

	add("v1 only", body, nil, []signature.Secret{s1}, nil, []bool{true, false, false}, none)
	add("v1a only", body, []signature.PrivateKey{k1}, nil, nil, none, []bool{true, false, false})
	add("rotation", body, all, allSecrets, nil, []bool{true, true, false}, []bool{true, true, false})
	for i := range 4 { // each rotation entry alone verifies with its own key only
		wantV1, wantV1a := slices.Clone(none), slices.Clone(none)
		if i < 2 {
			wantV1[i] = true
		} else {
			wantV1a[i-2] = true
		}
		add(fmt.Sprintf("rotation entry %d alone", i+1), body, all, allSecrets, func(h *signature.Headers, _ *[]byte) {
			h.Signature = strings.Split(h.Signature, " ")[i]
		}, wantV1, wantV1a)
	}
	for name, b := range interopBodies {
		add(name+" body", b, []signature.PrivateKey{k2}, []signature.Secret{s2}, nil,
			[]bool{false, true, false}, []bool{false, true, false})
	}

	// Dotted ids (generation ids may hold '.'): the official library and Node
	// check them like any other; moving the id's last dot breaks both.
	for i, id := range []string{"gen.507f1f77bcf86cd799439011", "a.b.c:d~e-f_g"} {
		h := mustSign(t, signature.Signer{Keys: all}, id, time.Now(), body, allSecrets...)
		c := nodeCase{
			Name: fmt.Sprintf("dotted id %d", i+1), ID: h.ID, Timestamp: h.Timestamp, Signature: h.Signature,
			BodyB64: base64.StdEncoding.EncodeToString(body),
			Secrets: secrets, PublicKeys: pubs, wantV1: []bool{true, true, false}, wantV1a: []bool{true, true, false},
		}
		cases = append(cases, c)
		c.Name += " presented without its last dot"
		c.ID = strings.Replace(id, ".", "", 1)
		c.wantV1, c.wantV1a = none, none
		cases = append(cases, c)
	}

	// Tampered: Node must reject every entry.
	tamper := map[string]func(*signature.Headers, *[]byte){
		"tampered body": func(_ *signature.Headers, b *[]byte) {
			*b = bytes.Replace(*b, []byte("abc123.png"), []byte("abc124.png"), 1)
		},
		"tampered body whitespace": func(_ *signature.Headers, b *[]byte) { *b = bytes.Replace(*b, []byte(`,"`), []byte(`, "`), 1) },
		"tampered id":              func(h *signature.Headers, _ *[]byte) { h.ID += "x" },
		"tampered timestamp":       func(h *signature.Headers, _ *[]byte) { h.Timestamp = bumpTimestamp(t, h.Timestamp) },
		"signatures of another message": func(h *signature.Headers, _ *[]byte) {
			other, err := signature.Signer{Keys: all}.Sign(h.ID, time.Now(), []byte(`{"id":"other"}`), allSecrets...)
			if err != nil {
				t.Fatal(err)
			}
			h.Signature = other.Signature
		},
	}
	for name, edit := range tamper {
		add(name, body, all, allSecrets, edit, none, none)
	}
	// The official library also enforces the 5-minute tolerance (verify.js
	// checks v1a signatures only, not their age).
	for name, at := range map[string]time.Duration{"expired": -6 * time.Minute, "future": 6 * time.Minute} {
		add(name, body, nil, allSecrets, func(h *signature.Headers, _ *[]byte) {
			h.Timestamp = fmt.Sprint(time.Now().Add(at).Unix())
			again, err := signature.Signer{}.Sign(h.ID, time.Now().Add(at), body, allSecrets...)
			if err != nil {
				t.Fatal(err)
			}
			h.Signature = again.Signature
		}, none, none)
	}

	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "verify.js")
	cmd.Dir = interopDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node verify.js: %v\n%s", err, stderr.String())
	}
	var results []nodeResult
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(cases) {
		t.Fatalf("verify.js answered %d results for %d cases (%v): %s", len(results), len(cases), err, out)
	}
	for i, c := range cases {
		r := results[i]
		if r.Name != c.Name || !slices.Equal(r.V1, c.wantV1) || !slices.Equal(r.V1a, c.wantV1a) {
			t.Errorf("%s: node says v1 %v, v1a %v; want v1 %v, v1a %v (secrets s1 s2 stranger, keys k1 k2 stranger)",
				c.Name, r.V1, r.V1a, c.wantV1, c.wantV1a)
		}
	}
}

// TestExpressReceivers runs the README's two Express receivers, unchanged,
// and posts signed, tampered, stale and foreign webhooks to them.
func TestExpressReceivers(t *testing.T) {
	node := nodeOrSkip(t)
	priv, pub := mustKey(t)
	otherPriv, _ := mustKey(t)
	sec, otherSec := mustSecret(t), mustSecret(t)

	receivers := []struct {
		file string
		env  string
		// sign signs with the receiver's key (and, if rotating, a foreign one
		// first) or, if foreign, with foreign keys only.
		sign func(id string, ts time.Time, body []byte, rotating, foreign bool) signature.Headers
	}{
		{"receiver-v1.js", "WEBHOOK_SECRET=" + sec.Reveal(),
			func(id string, ts time.Time, body []byte, rotating, foreign bool) signature.Headers {
				secs := []signature.Secret{sec}
				switch {
				case foreign:
					secs = []signature.Secret{otherSec}
				case rotating:
					secs = []signature.Secret{otherSec, sec}
				}
				return mustSign(t, signature.Signer{Keys: []signature.PrivateKey{priv}}, id, ts, body, secs...)
			}},
		{"receiver-v1a.js", "WEBHOOK_PUBLIC_KEY=" + pub.String(),
			func(id string, ts time.Time, body []byte, rotating, foreign bool) signature.Headers {
				keys := []signature.PrivateKey{priv}
				switch {
				case foreign:
					keys = []signature.PrivateKey{otherPriv}
				case rotating:
					keys = []signature.PrivateKey{otherPriv, priv}
				}
				return mustSign(t, signature.Signer{Keys: keys}, id, ts, body, sec)
			}},
	}
	for _, r := range receivers {
		t.Run(r.file, func(t *testing.T) {
			base, out := startReceiver(t, node, r.file, r.env)
			tests := []struct {
				name     string
				body     []byte        // nil: the provider's body
				ts       time.Duration // offset from now
				rotating bool
				foreign  bool
				edit     func(*signature.Headers, []byte) []byte
				want     int
			}{
				{name: "valid", want: http.StatusOK},
				{name: "rotation", rotating: true, want: http.StatusOK},
				{name: "unicode body", body: interopBodies["unicode"], want: http.StatusOK},
				{name: "4 min late", ts: -4 * time.Minute, want: http.StatusOK},
				{name: "6 min late", ts: -6 * time.Minute, want: http.StatusBadRequest},
				{name: "6 min early", ts: 6 * time.Minute, want: http.StatusBadRequest},
				{name: "foreign key", foreign: true, want: http.StatusBadRequest},
				{name: "tampered body", edit: func(_ *signature.Headers, b []byte) []byte {
					return bytes.Replace(b, []byte("abc123.png"), []byte("evil.png"), 1)
				}, want: http.StatusBadRequest},
				{name: "tampered id", edit: func(h *signature.Headers, b []byte) []byte { h.ID += "0"; return b }, want: http.StatusBadRequest},
				{name: "tampered timestamp", edit: func(h *signature.Headers, b []byte) []byte {
					h.Timestamp = bumpTimestamp(t, h.Timestamp)
					return b
				}, want: http.StatusBadRequest},
				{name: "no signature", edit: func(h *signature.Headers, b []byte) []byte { h.Signature = ""; return b }, want: http.StatusBadRequest},
			}
			for _, tt := range tests {
				sent := body
				if tt.body != nil {
					sent = tt.body
				}
				h := r.sign("507f1f77bcf86cd799439011", time.Now().Add(tt.ts), sent, tt.rotating, tt.foreign)
				if tt.edit != nil {
					sent = tt.edit(&h, slices.Clone(sent))
				}
				req, err := http.NewRequest(http.MethodPost, base+"/webhook", bytes.NewReader(sent))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				h.Set(req.Header)
				if h.Signature == "" {
					req.Header.Del(signature.HeaderSignature)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Errorf("%s: %d %s, want %d", tt.name, resp.StatusCode, got, tt.want)
				}
			}
			if log := out(); !strings.Contains(log, "Generation 507f1f77bcf86cd799439011 completed: https://files.artificialstudio.ai/generations/abc123.png") {
				t.Errorf("receiver did not log the generation:\n%s", log)
			}
		})
	}
}

// TestReadmeSnippets keeps README.md's JavaScript equal to the files that
// TestExpressReceivers runs.
func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"receiver-v1.js", "receiver-v1a.js"} {
		src, err := os.ReadFile(filepath.Join(interopDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, []byte("```js\n"+string(src)+"```\n")) {
			t.Errorf("README.md lacks %s/%s verbatim in a ```js block", interopDir, f)
		}
	}
}

// startReceiver runs `node serve.js file` with env added and returns its base
// URL on 127.0.0.1 and a func returning its stdout so far. The process is
// killed when the test ends.
func startReceiver(tb testing.TB, node, file, env string) (base string, stdout func() string) {
	tb.Helper()
	cmd := exec.Command(node, "serve.js", file)
	cmd.Dir = interopDir
	cmd.Env = append(os.Environ(), env)
	out := &portWriter{port: make(chan string, 1)}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	tb.Cleanup(stop)
	select {
	case port := <-out.port:
		return "http://127.0.0.1:" + port, func() string { stop(); return out.String() }
	case err := <-exited:
		stopped = true
		tb.Fatalf("node serve.js %s exited: %v\n%s", file, err, stderr.String())
	case <-time.After(30 * time.Second):
		tb.Fatalf("node serve.js %s did not start listening in 30 s\n%s", file, stderr.String())
	}
	return "", nil
}

// portWriter collects a receiver's stdout and sends the port from its first
// line, "listening PORT".
type portWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	port chan string
	sent bool
}

func (w *portWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if line, _, ok := strings.Cut(w.buf.String(), "\n"); ok && !w.sent {
		if port, ok := strings.CutPrefix(line, "listening "); ok {
			w.port <- port
			w.sent = true
		}
	}
	return len(p), nil
}

func (w *portWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func mustKey(tb testing.TB) (signature.PrivateKey, signature.PublicKey) {
	tb.Helper()
	priv, pub, err := signature.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return priv, pub
}

func mustSecret(tb testing.TB) signature.Secret {
	tb.Helper()
	s, err := signature.GenerateSecret(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func mustSign(tb testing.TB, s signature.Signer, id string, ts time.Time, body []byte, secrets ...signature.Secret) signature.Headers {
	tb.Helper()
	h, err := s.Sign(id, ts, body, secrets...)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// bumpTimestamp returns ts plus one second.
func bumpTimestamp(tb testing.TB, ts string) string {
	tb.Helper()
	var n int64
	if _, err := fmt.Sscan(ts, &n); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprint(n + 1)
}
