package signature_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// signed returns headers for body signed at t0 with a v1 secret and a v1a key,
// and the two trusted keys.
func signed(tb testing.TB) (signature.Headers, signature.PublicKey, signature.Secret) {
	tb.Helper()
	priv, pub := keyPair(tb, 1)
	sec := secret(tb, 2)
	h, err := signature.Signer{Keys: []signature.PrivateKey{priv}}.Sign("msg_1", t0, body, sec)
	if err != nil {
		tb.Fatal(err)
	}
	return h, pub, sec
}

func TestVerifyTolerance(t *testing.T) {
	h, pub, sec := signed(t)
	tests := []struct {
		name      string
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{"same second", t0, 0, nil},
		{"default, 5 min late", t0.Add(5 * time.Minute), 0, nil},
		{"default, 5 min 1 s late", t0.Add(5*time.Minute + time.Second), 0, signature.ErrTimestampOutOfTolerance},
		{"default, 5 min early", t0.Add(-5 * time.Minute), 0, nil},
		{"default, 5 min 1 s early", t0.Add(-5*time.Minute - time.Second), 0, signature.ErrTimestampOutOfTolerance},
		{"negative means default", t0.Add(4 * time.Minute), -time.Second, nil},
		{"30 s, 30 s late", t0.Add(30 * time.Second), 30 * time.Second, nil},
		{"30 s, 31 s late", t0.Add(31 * time.Second), 30 * time.Second, signature.ErrTimestampOutOfTolerance},
		{"a day late", t0.Add(24 * time.Hour), time.Hour, signature.ErrTimestampOutOfTolerance},
		{"zero now", time.Time{}, 0, signature.ErrTimestampOutOfTolerance},
	}
	for _, tt := range tests {
		for _, k := range []signature.Key{pub, sec} {
			if err := signature.Verify(h, body, tt.now, tt.tolerance, k); !errors.Is(err, tt.want) {
				t.Errorf("%s (%T): Verify = %v, want %v", tt.name, k, err, tt.want)
			}
		}
	}
	// A timestamp far in the future must not overflow into "in tolerance".
	far := h
	far.Timestamp = "9223372036854775807"
	if err := signature.Verify(far, body, t0, 0, pub); !errors.Is(err, signature.ErrTimestampOutOfTolerance) {
		t.Errorf("timestamp MaxInt64: Verify = %v, want ErrTimestampOutOfTolerance", err)
	}
}

// Changing any signed part (body, id, timestamp) or the signature makes every
// entry fail, for both schemes.
func TestVerifyTampering(t *testing.T) {
	h, pub, sec := signed(t)
	entries := strings.Split(h.Signature, " ")
	flip := func(entry string) string { // changes one base64 character of the signature
		v, sig, _ := strings.Cut(entry, ",")
		c := "A"
		if sig[5] == 'A' {
			c = "B"
		}
		return v + "," + sig[:5] + c + sig[6:]
	}
	tests := []struct {
		name   string
		h      func(signature.Headers) signature.Headers
		body   []byte
		status error
	}{
		{"body: one byte", nil, []byte(strings.Replace(string(body), "abc123.png", "abc124.png", 1)), nil},
		{"body: trailing newline", nil, append(append([]byte{}, body...), '\n'), nil},
		{"body: re-serialized JSON", nil, []byte(strings.ReplaceAll(string(body), `","`, `", "`)), nil},
		{"body: empty", nil, []byte{}, nil},
		{"id", func(h signature.Headers) signature.Headers { h.ID = "msg_2"; return h }, body, nil},
		{"timestamp +1 s", func(h signature.Headers) signature.Headers { h.Timestamp = "1768473001"; return h }, body, nil},
		{"signatures swapped between versions", func(h signature.Headers) signature.Headers {
			v1, v1a := strings.TrimPrefix(entries[0], "v1,"), strings.TrimPrefix(entries[1], "v1a,")
			h.Signature = "v1," + v1a[:44] + " v1a," + v1 + v1
			return h
		}, body, signature.ErrMalformedHeader},
		{"signature bit", func(h signature.Headers) signature.Headers {
			h.Signature = flip(entries[0]) + " " + flip(entries[1])
			return h
		}, body, nil},
	}
	for _, tt := range tests {
		th := h
		if tt.h != nil {
			th = tt.h(h)
		}
		want := tt.status
		if want == nil {
			want = signature.ErrNoMatchingSignature
		}
		for _, k := range []signature.Key{pub, sec} {
			if err := signature.Verify(th, tt.body, t0, 0, k); !errors.Is(err, want) {
				t.Errorf("%s (%T): Verify = %v, want %v", tt.name, k, err, want)
			}
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	h, pub, sec := signed(t)
	entries := strings.Split(h.Signature, " ")
	set := func(f func(*signature.Headers)) signature.Headers { c := h; f(&c); return c }
	tests := []struct {
		name string
		h    signature.Headers
		want error
	}{
		{"no id", set(func(h *signature.Headers) { h.ID = "" }), signature.ErrMissingHeader},
		{"no timestamp", set(func(h *signature.Headers) { h.Timestamp = "" }), signature.ErrMissingHeader},
		{"no signature", set(func(h *signature.Headers) { h.Signature = "" }), signature.ErrMissingHeader},
		{"space in id", set(func(h *signature.Headers) { h.ID = "msg 1" }), signature.ErrMalformedHeader},
		{"timestamp word", set(func(h *signature.Headers) { h.Timestamp = "hello" }), signature.ErrMalformedHeader},
		{"timestamp signed", set(func(h *signature.Headers) { h.Timestamp = "+1768473000" }), signature.ErrMalformedHeader},
		{"timestamp negative", set(func(h *signature.Headers) { h.Timestamp = "-1" }), signature.ErrMalformedHeader},
		{"timestamp fraction", set(func(h *signature.Headers) { h.Timestamp = "1768473000.5" }), signature.ErrMalformedHeader},
		{"timestamp RFC 3339", set(func(h *signature.Headers) { h.Timestamp = "2026-01-15T10:30:00Z" }), signature.ErrMalformedHeader},
		{"timestamp too big", set(func(h *signature.Headers) { h.Timestamp = "99999999999999999999" }), signature.ErrMalformedHeader},
		{"entry without comma", set(func(h *signature.Headers) { h.Signature = "v1" }), signature.ErrMalformedHeader},
		{"entry without signature", set(func(h *signature.Headers) { h.Signature = "v1," }), signature.ErrMalformedHeader},
		{"entry without version", set(func(h *signature.Headers) { h.Signature = "," + entries[0][3:] }), signature.ErrMalformedHeader},
		{"double space", set(func(h *signature.Headers) { h.Signature = entries[0] + "  " + entries[1] }), signature.ErrMalformedHeader},
		{"v1 not base64", set(func(h *signature.Headers) { h.Signature = "v1,dawfeoifkpqwoekfpqoekf!" }), signature.ErrMalformedHeader},
		{"v1 short", set(func(h *signature.Headers) { h.Signature = "v1,dawfeoifkpqwoekfpqoekf" }), signature.ErrMalformedHeader},
		{"v1 unpadded", set(func(h *signature.Headers) { h.Signature = strings.TrimRight(entries[0], "=") }), signature.ErrMalformedHeader},
		{"v1a truncated", set(func(h *signature.Headers) { h.Signature = entries[1][:40] }), signature.ErrMalformedHeader},
		{"stray entry beside a valid one", set(func(h *signature.Headers) { h.Signature = h.Signature + " garbage" }), signature.ErrMalformedHeader},
		{"too many entries", set(func(h *signature.Headers) {
			h.Signature = strings.Repeat("v2,x ", signature.MaxEntries) + entries[1]
		}), signature.ErrMalformedHeader},
		{"only unknown versions", set(func(h *signature.Headers) { h.Signature = "v2,abc v1b,def" }), signature.ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		for _, k := range []signature.Key{pub, sec} {
			err := signature.Verify(tt.h, body, t0, 0, k)
			if !errors.Is(err, tt.want) {
				t.Errorf("%s (%T): Verify = %v, want %v", tt.name, k, err, tt.want)
			}
		}
	}
}

// Unknown versions are skipped, as the libraries' "multi sig" tests require;
// a zero-padded timestamp is checked as the libraries re-format it.
func TestVerifyAccepts(t *testing.T) {
	h, pub, sec := signed(t)
	entries := strings.Split(h.Signature, " ")
	tests := []struct {
		name string
		h    signature.Headers
	}{
		{"unknown versions around", signature.Headers{ID: h.ID, Timestamp: h.Timestamp,
			Signature: "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + h.Signature + " v3,x"}},
		{"reversed entries", signature.Headers{ID: h.ID, Timestamp: h.Timestamp, Signature: entries[1] + " " + entries[0]}},
		{"zero-padded timestamp", signature.Headers{ID: h.ID, Timestamp: "0" + h.Timestamp, Signature: h.Signature}},
	}
	for _, tt := range tests {
		for _, k := range []signature.Key{pub, sec} {
			if err := signature.Verify(tt.h, body, t0, 0, k); err != nil {
				t.Errorf("%s (%T): Verify = %v", tt.name, k, err)
			}
		}
	}
	// Keys of both kinds at once, the matching one last.
	_, stranger := keyPair(t, 9)
	if err := signature.Verify(h, body, t0, 0, stranger, secret(t, 8), pub); err != nil {
		t.Errorf("several trusted keys: Verify = %v", err)
	}
}

func TestVerifyKeys(t *testing.T) {
	h, pub, _ := signed(t)
	var nilSecret *signature.Secret
	tests := []struct {
		name string
		keys []signature.Key
		want error
	}{
		{"none", nil, signature.ErrNoKeys},
		{"nil", []signature.Key{nil}, signature.ErrInvalidKey},
		{"zero public key", []signature.Key{signature.PublicKey{}}, signature.ErrInvalidKey},
		{"zero secret", []signature.Key{pub, signature.Secret{}}, signature.ErrInvalidKey},
		{"nil *Secret", []signature.Key{nilSecret}, signature.ErrInvalidKey},
	}
	for _, tt := range tests {
		if err := signature.Verify(h, body, t0, 0, tt.keys...); !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Pointers to keys work like the keys.
	if err := signature.Verify(h, body, t0, 0, &pub); err != nil {
		t.Errorf("*PublicKey: Verify = %v", err)
	}
}

// TestDottedID: generation ids may hold '.', and the official libraries sign
// and verify such ids; so does this package, with the id still bound to the
// signature.
func TestDottedID(t *testing.T) {
	priv, pub := keyPair(t, 1)
	sec := secret(t, 2)
	for _, id := range []string{"gen.1", "a.b.c", "507f.1f77:bc~f-86_cd", "1700000000.5"} {
		h, err := signature.Signer{Keys: []signature.PrivateKey{priv}}.Sign(id, t0, body, sec)
		if err != nil {
			t.Fatalf("Sign(%q) = %v", id, err)
		}
		for _, k := range []signature.Key{pub, sec} {
			if err := signature.Verify(h, body, t0, 0, k); err != nil {
				t.Errorf("Verify(id %q, %T) = %v, want nil", id, k, err)
			}
			for _, other := range []string{strings.TrimSuffix(id, id[strings.LastIndexByte(id, '.'):]), id + ".", strings.Replace(id, ".", "_", 1)} {
				o := h
				o.ID = other
				if err := signature.Verify(o, body, t0, 0, k); !errors.Is(err, signature.ErrNoMatchingSignature) {
					t.Errorf("signed as %q, presented as %q (%T): Verify = %v, want ErrNoMatchingSignature", id, other, k, err)
				}
			}
		}
	}
}
