package signature_test

import (
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TestPublishedVectors signs and verifies the official libraries' fixed
// vectors. Sources, in github.com/standard-webhooks/standard-webhooks:
//   - v1: libraries/javascript/src/webhook.test.ts "sign function works",
//     libraries/python/tests/test_webhooks.py test_sign_function and
//     libraries/go/webhook_symmetric_test.go TestSymmetricWebhookSign;
//   - v1a: libraries/go/webhook_asymmetric_test.go TestAsymmetricWebhookSign
//     (key passed without its whsk_ prefix there; Ed25519 is deterministic).
func TestPublishedVectors(t *testing.T) {
	const (
		msgID   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		payload = `{"test": 2432232314}`
	)
	ts := time.Unix(1614265330, 0)
	tests := []struct {
		name string
		key  string
		want string
	}{
		{"v1", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{"v1a", "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=",
			"v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				s       signature.Signer
				secrets []signature.Secret
				trusted signature.Key
			)
			if tt.name == "v1" {
				sec, err := signature.ParseSecret(tt.key)
				if err != nil {
					t.Fatal(err)
				}
				secrets, trusted = []signature.Secret{sec}, sec
			} else {
				k, err := signature.ParsePrivateKey(tt.key)
				if err != nil {
					t.Fatal(err)
				}
				s.Keys, trusted = []signature.PrivateKey{k}, k.Public()
			}
			h, err := s.Sign(msgID, ts, []byte(payload), secrets...)
			if err != nil {
				t.Fatal(err)
			}
			want := signature.Headers{ID: msgID, Timestamp: "1614265330", Signature: tt.want}
			if h != want {
				t.Errorf("Sign = %+v, want %+v", h, want)
			}
			if err := signature.Verify(want, []byte(payload), ts, 0, trusted); err != nil {
				t.Errorf("Verify(published) = %v", err)
			}
		})
	}
}

// TestKeyVectors pins what whsk_ and whpk_ hold, and the key ID, with
// published Ed25519 vectors:
//   - RFC 8032 §7.1 TEST 1: secret key (the 32-byte seed) 9d61b1...7f60
//     gives public key d75a98...511a; RFC 8037 Appendix A.1 is the same pair
//     as a JWK (d "nWGxne_9...", x "11qYAYKx...").
//   - RFC 8037 Appendix A.3: that key's RFC 7638 thumbprint is
//     "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; ID is its first 16 characters.
func TestKeyVectors(t *testing.T) {
	const (
		whsk = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=" // seed 9d61b1...7f60
		whpk = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" // public d75a98...511a
		id   = "kPrK_qmxVWaYVA9w"
	)
	priv, err := signature.ParsePrivateKey(whsk)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signature.ParsePublicKey(whpk)
	if err != nil {
		t.Fatal(err)
	}
	if priv.Public() != pub {
		t.Errorf("ParsePrivateKey(RFC 8032 seed).Public() = %s, want %s", priv.Public(), whpk)
	}
	if got := pub.String(); got != whpk {
		t.Errorf("String() = %s, want %s", got, whpk)
	}
	if got := priv.Reveal(); got != whsk {
		t.Errorf("Reveal() = %s, want %s", got, whsk)
	}
	if pub.ID() != id || priv.ID() != id {
		t.Errorf("ID() = %q / %q, want %q", pub.ID(), priv.ID(), id)
	}
}
