package signature_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// A receiver trusts the provider's public key and checks every request
// against the exact body bytes before using them.
func Example() {
	// From the receiver's configuration; public, so it may sit in plain config.
	pub, err := signature.ParsePublicKey("whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
	if err != nil {
		panic(err)
	}

	webhook := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := signature.Verify(signature.FromHeader(r.Header), body, time.Now(), signature.DefaultTolerance, pub); err != nil {
			http.Error(w, "invalid signature", http.StatusBadRequest) // errors.Is(err, signature.ErrTimestampOutOfTolerance)…
			return
		}
		// body is authentic: decode it; drop repeats of the webhook-id header.
		fmt.Printf("verified %s: %s\n", r.Header.Get(signature.HeaderID), body)
		w.WriteHeader(http.StatusOK)
	}

	// The rest plays the dispatcher, which holds the private key.
	priv, err := signature.ParsePrivateKey("whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
	if err != nil {
		panic(err)
	}
	// post signs signedBody and sends sentBody, as a forger changing it in flight would.
	post := func(signedBody, sentBody string) int {
		h, err := signature.Signer{Keys: []signature.PrivateKey{priv}}.Sign("507f1f77bcf86cd799439011", time.Now(), []byte(signedBody))
		if err != nil {
			panic(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(sentBody))
		req.Header.Set("Content-Type", "application/json")
		h.Set(req.Header)
		rec := httptest.NewRecorder()
		webhook(rec, req)
		return rec.Code
	}
	fmt.Println(post(`{"status":"success"}`, `{"status":"success"}`))
	fmt.Println(post(`{"status":"success"}`, `{"status":"success","output":"https://evil.example/x.png"}`))
	// Output:
	// verified 507f1f77bcf86cd799439011: {"status":"success"}
	// 200
	// 400
}

// The headers of one attempt, signed with an endpoint's secret and the
// dispatcher's key (the official libraries' test keys).
func ExampleSigner_Sign() {
	sec, err := signature.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	key, err := signature.ParsePrivateKey("whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
	if err != nil {
		panic(err)
	}
	s := signature.Signer{Keys: []signature.PrivateKey{key}}
	h, err := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`), sec)
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://example.com/webhook", nil)
	h.Set(req.Header)
	for _, name := range []string{signature.HeaderID, signature.HeaderTimestamp, signature.HeaderSignature} {
		fmt.Printf("%s: %s\n", name, req.Header.Get(name))
	}
	fmt.Println(key, key.Public())
	// Output:
	// webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek
	// webhook-timestamp: 1614265330
	// webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==
	// whsk_[redacted id=3n4GkzbCBQuUyldb] whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=
}
