package signature_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// keyPair returns a fixed key pair made from seed byte c.
func keyPair(tb testing.TB, c byte) (signature.PrivateKey, signature.PublicKey) {
	tb.Helper()
	priv, pub, err := signature.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{c}, 32)))
	if err != nil {
		tb.Fatal(err)
	}
	return priv, pub
}

// secret returns a fixed 32-byte secret made from byte c.
func secret(tb testing.TB, c byte) signature.Secret {
	tb.Helper()
	s, err := signature.ParseSecret("whsec_" + b64(32, c))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var (
	t0   = time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC)
	body = []byte(`{"id":"507f1f77bcf86cd799439011","status":"success","tool":"create-image","type":"image","output":"https://files.artificialstudio.ai/generations/abc123.png","thumbnail":"https://files.artificialstudio.ai/thumbnails/abc123.jpg","createdAt":"2024-01-15T10:30:00.000Z"}`)
)

func TestSignRoundTrip(t *testing.T) {
	priv, pub := keyPair(t, 1)
	sec := secret(t, 2)
	tests := []struct {
		name    string
		keys    []signature.PrivateKey
		secrets []signature.Secret
		trusted []signature.Key
		entries []string // versions, in header order
	}{
		{"v1a", []signature.PrivateKey{priv}, nil, []signature.Key{pub}, []string{"v1a"}},
		{"v1", nil, []signature.Secret{sec}, []signature.Key{sec}, []string{"v1"}},
		{"both, public key trusted", []signature.PrivateKey{priv}, []signature.Secret{sec}, []signature.Key{pub}, []string{"v1", "v1a"}},
		{"both, secret trusted", []signature.PrivateKey{priv}, []signature.Secret{sec}, []signature.Key{sec}, []string{"v1", "v1a"}},
	}
	for _, tt := range tests {
		h, err := signature.Signer{Keys: tt.keys}.Sign("msg_1", t0.Add(999*time.Millisecond), body, tt.secrets...)
		if err != nil {
			t.Fatalf("%s: Sign: %v", tt.name, err)
		}
		if h.ID != "msg_1" || h.Timestamp != "1768473000" {
			t.Errorf("%s: headers %+v, want id msg_1 and timestamp 1768473000 (seconds, truncated)", tt.name, h)
		}
		var versions []string
		for _, e := range strings.Split(h.Signature, " ") {
			v, _, _ := strings.Cut(e, ",")
			versions = append(versions, v)
		}
		if strings.Join(versions, " ") != strings.Join(tt.entries, " ") {
			t.Errorf("%s: entries %v, want %v", tt.name, versions, tt.entries)
		}
		if err := signature.Verify(h, body, t0, 0, tt.trusted...); err != nil {
			t.Errorf("%s: Verify = %v", tt.name, err)
		}
		// Through an http.Header and back, as on the wire.
		hdr := http.Header{}
		h.Set(hdr)
		if got := signature.FromHeader(hdr); got != h {
			t.Errorf("%s: FromHeader(Set) = %+v, want %+v", tt.name, got, h)
		}
	}
}

// During a rotation every key signs; a receiver that trusts only one of the
// public keys (or secrets) still accepts, and one that trusts neither does not.
func TestSignRotation(t *testing.T) {
	oldPriv, oldPub := keyPair(t, 1)
	newPriv, newPub := keyPair(t, 2)
	_, strangerPub := keyPair(t, 3)
	oldSec, newSec := secret(t, 4), secret(t, 5)
	s := signature.Signer{Keys: []signature.PrivateKey{newPriv, oldPriv}}
	h, err := s.Sign("msg_rotate", t0, body, newSec, oldSec)
	if err != nil {
		t.Fatal(err)
	}
	entries := strings.Split(h.Signature, " ")
	if len(entries) != 4 {
		t.Fatalf("webhook-signature has %d entries, want 4: %q", len(entries), h.Signature)
	}
	tests := []struct {
		name    string
		entry   int // the only entry kept
		trusted signature.Key
		want    error
	}{
		{"new secret", 0, newSec, nil},
		{"old secret", 1, oldSec, nil},
		{"new key", 2, newPub, nil},
		{"old key", 3, oldPub, nil},
		{"new key's entry, old key", 2, oldPub, signature.ErrNoMatchingSignature},
		{"old key's entry, new key", 3, newPub, signature.ErrNoMatchingSignature},
		{"new secret's entry, old secret", 0, oldSec, signature.ErrNoMatchingSignature},
		{"v1 entry, public key", 0, newPub, signature.ErrUnsupportedVersion},
		{"v1a entry, secret", 2, newSec, signature.ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		one := h
		one.Signature = entries[tt.entry]
		if err := signature.Verify(one, body, t0, 0, tt.trusted); !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, k := range []signature.Key{oldPub, newPub, oldSec, newSec} {
		if err := signature.Verify(h, body, t0, 0, k); err != nil {
			t.Errorf("full header, one trusted key: %v", err)
		}
	}
	if err := signature.Verify(h, body, t0, 0, strangerPub); !errors.Is(err, signature.ErrNoMatchingSignature) {
		t.Errorf("untrusted key: Verify = %v, want ErrNoMatchingSignature", err)
	}
}

func TestSignErrors(t *testing.T) {
	priv, _ := keyPair(t, 1)
	withKey := signature.Signer{Keys: []signature.PrivateKey{priv}}
	tests := []struct {
		name    string
		s       signature.Signer
		id      string
		ts      time.Time
		secrets []signature.Secret
		want    error
	}{
		{"nothing to sign with", signature.Signer{}, "msg_1", t0, nil, signature.ErrNoKeys},
		{"zero secret", signature.Signer{}, "msg_1", t0, []signature.Secret{{}}, signature.ErrInvalidKey},
		{"zero key", signature.Signer{Keys: []signature.PrivateKey{{}}}, "msg_1", t0, nil, signature.ErrInvalidKey},
		{"empty id", withKey, "", t0, nil, signature.ErrInvalidID},
		{"space in id", withKey, "msg 1", t0, nil, signature.ErrInvalidID},
		{"newline in id", withKey, "msg\r\nx-evil: 1", t0, nil, signature.ErrInvalidID},
		{"non-ASCII id", withKey, "msg_é", t0, nil, signature.ErrInvalidID},
		{"long id", withKey, strings.Repeat("a", signature.MaxIDLength+1), t0, nil, signature.ErrInvalidID},
		{"before 1970", withKey, "msg_1", time.Unix(-1, 0), nil, signature.ErrInvalidTimestamp},
	}
	for _, tt := range tests {
		if _, err := tt.s.Sign(tt.id, tt.ts, body, tt.secrets...); !errors.Is(err, tt.want) {
			t.Errorf("%s: Sign = %v, want %v", tt.name, err, tt.want)
		}
	}
	// The longest id, time zero and dotted ids (generation ids may hold '.',
	// and the official libraries sign them) are fine.
	for _, id := range []string{"msg.1", ".", "a.b.c", "1.2.3", "gen.1700000000"} {
		if _, err := withKey.Sign(id, t0, body); err != nil {
			t.Errorf("Sign(%q) = %v, want nil", id, err)
		}
	}
	if _, err := withKey.Sign(strings.Repeat("a", signature.MaxIDLength), time.Unix(0, 0), nil); err != nil {
		t.Errorf("Sign(max id, epoch, nil body) = %v", err)
	}
}
