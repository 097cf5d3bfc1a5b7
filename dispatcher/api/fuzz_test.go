package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api/strictjson"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// FuzzDecodeDelivery drives the body of POST /v1/deliveries through what the
// API does before Redis: decodeStrict into a DeliveryRequest, then
// API.prepare under the default URL guard. It must never panic. A refusal is
// strictjson.ErrMalformed or a 4xx with a code. Whatever is accepted is valid UTF-8
// JSON, its webhook passes urlguard.CheckURL unchanged, its id is header-safe,
// and its body bytes decode back to a generation that Normalize leaves as it
// is and Encode reproduces byte for byte.
// Seeds live in testdata/fuzz/FuzzDecodeDelivery.
func FuzzDecodeDelivery(f *testing.F) {
	f.Add([]byte(`{"webhook":"https://hooks.example.com/a?b=c","generation":{"id":"507f1f77bcf86cd799439011","status":"success","tool":"create-image","type":"image","output":"https://files.example.com/a.png","thumbnail":"https://files.example.com/a.jpg","createdAt":"2024-01-15T10:30:00Z"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req DeliveryRequest
		if err := strictjson.Decode(body, &req); err != nil {
			if !errors.Is(err, strictjson.ErrMalformed) {
				t.Fatalf("strictjson.Decode(%q) = %v, want strictjson.ErrMalformed", body, err)
			}
			return
		}
		if !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("decodeStrict accepted %q, which is not valid UTF-8 JSON", body)
		}
		a := &API{} // nil Guard: the default, fully closed policy
		d, e := a.prepare(req)
		if e != nil {
			if e.Status < 400 || e.Status > 499 || e.Code == "" || e.Message == "" {
				t.Fatalf("prepare refused %q with %d %q %q: want a 4xx with code and message", body, e.Status, e.Code, e.Message)
			}
			return
		}
		if d.Webhook != req.Webhook {
			t.Fatalf("webhook changed: %q -> %q", req.Webhook, d.Webhook)
		}
		if err := urlguard.CheckURL(d.Webhook); err != nil {
			t.Fatalf("accepted webhook %q that the guard refuses: %v", d.Webhook, err)
		}
		if !headerSafeID(d.ID) {
			t.Fatalf("accepted id %q, not header-safe", d.ID)
		}
		var g payload.Generation
		dec := json.NewDecoder(bytes.NewReader(d.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&g); err != nil {
			t.Fatalf("body %q does not decode: %v", d.Body, err)
		}
		if g.ID != d.ID {
			t.Fatalf("body id %q, delivery id %q", g.ID, d.ID)
		}
		again, err := payload.Normalize(g)
		if err != nil {
			t.Fatalf("the sent body %s does not pass Normalize: %v", d.Body, err)
		}
		if !reflect.DeepEqual(again, g) {
			t.Fatalf("Normalize is not idempotent on %s: %+v", d.Body, again)
		}
		if enc, err := payload.Encode(g); err != nil || !bytes.Equal(enc, d.Body) {
			t.Fatalf("re-encoding %s gives %s (%v)", d.Body, enc, err)
		}
	})
}

// headerSafeID is the id rule restated independently: 1–128 bytes of ASCII
// letters, digits and . _ : ~ -.
func headerSafeID(id string) bool {
	if id == "" || len(id) > payload.MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '~' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
