package dispatcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

func TestTaskRoundTripKeepsBytes(t *testing.T) {
	body := []byte(`{"id":"x","output":"https://a.example/?q=<b>&c=\u2028"}`)
	raw, err := EncodeTask(Delivery{ID: "x", Webhook: "https://a.example/h", EnqueuedAt: time.Unix(1, 0), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeTask(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != string(body) {
		t.Errorf("body changed in the task:\n%s\n%s", d.Body, body)
	}
	// Strings that need escaping survive too, and the payload is plain JSON.
	odd := Delivery{ID: "a\"b\\c\x01", Webhook: "https://a.example/h?q=\"x\"", EnqueuedAt: time.Unix(2, 5).UTC(), Body: body}
	raw, err = EncodeTask(odd)
	if err != nil || !json.Valid(raw) {
		t.Fatalf("encodeTask = %s, %v", raw, err)
	}
	back, err := DecodeTask(raw)
	if err != nil || back.ID != odd.ID || back.Webhook != odd.Webhook || !back.EnqueuedAt.Equal(odd.EnqueuedAt) || string(back.Body) != string(body) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if _, err := EncodeTask(Delivery{ID: "x", Webhook: "https://a.example/", Body: []byte("{not json")}); err == nil {
		t.Error("encodeTask accepted a body that is not JSON")
	}
	if _, err := DecodeTask([]byte(`{"id":"x"}`)); !errors.Is(err, ErrBadTask) {
		t.Errorf("DecodeTask(incomplete) = %v, want ErrBadTask", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{fmt.Errorf("dial: %w", urlguard.ErrForbidden), OutcomeBlocked},
		{&net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}, OutcomeDNS},
		{&net.DNSError{Err: "timeout", Name: "x.example", IsTimeout: true}, OutcomeDNS},
		{context.DeadlineExceeded, OutcomeTimeout},
		{&net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, OutcomeTimeout},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, OutcomeTLS},
		{x509.CertificateInvalidError{Reason: x509.Expired}, OutcomeTLS},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, OutcomeTLS},
		{tls.AlertError(40), OutcomeTLS},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, OutcomeConnect},
		{errors.New("connection reset by peer"), OutcomeConnect},
		{nil, OutcomeDelivered},
		{fmt.Errorf("deliver: %w", &StatusError{Code: 500}), OutcomeHTTPStatus},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestVocabularyLists: every listed value is Valid, and nothing else is.
func TestVocabularyLists(t *testing.T) {
	for _, o := range Outcomes() {
		if !o.Valid() {
			t.Errorf("Outcomes() lists %q, which is not Valid", o)
		}
	}
	for _, r := range Results() {
		if !r.Valid() {
			t.Errorf("Results() lists %q, which is not Valid", r)
		}
	}
	if Outcome("Delivered").Valid() || Result("").Valid() {
		t.Error("values outside the lists are Valid")
	}
	if len(States()) != 6 {
		t.Errorf("States() = %v", States())
	}
}
