package dispatcher

import "time"

// AnswerWithin is how fast a receiver should answer: "Your endpoint should
// respond within 5 seconds" (the provider's webhook page, best practices).
const AnswerWithin = 5 * time.Second

// TestIDPrefix starts the id of every test webhook ("test_" + random), so a
// receiver can tell a test from a generation.
const TestIDPrefix = "test_"

// TestResult is the answer to one test send: one real, guarded attempt to a
// customer's URL with a sample body, what a settings page shows.
type TestResult struct {
	// ID is the test webhook's id (webhook-id and X-Media-Id): TestIDPrefix + random.
	ID string `json:"id"`
	// OK is true when the receiver answered 200: a delivery would count as delivered.
	OK bool `json:"ok"`
	// Status is the HTTP status, 0 when no answer arrived.
	Status int `json:"status"`
	// DurationMs is the whole exchange in milliseconds.
	DurationMs float64 `json:"durationMs"`
	// Outcome classifies the attempt exactly as deliveries are (Classify);
	// OutcomeBlocked when the URL guard refused the URL before any dial.
	Outcome Outcome `json:"outcome"`
	// Error says what went wrong ("" when OK); it names the URL's scheme and
	// host only, never its path or query.
	Error string `json:"error"`
	// TLS is what the handshake showed, nil when there was none.
	TLS *TLSInfo `json:"tls"`
	// AnsweredWithin5s is true when a status arrived within AnswerWithin.
	AnsweredWithin5s bool `json:"answeredWithin5s"`
}

// TLSInfo is the receiver's TLS as a test send saw it.
type TLSInfo struct {
	// Version is the negotiated version, e.g. "TLS 1.3"; "" when the
	// handshake failed.
	Version string `json:"version,omitempty"`
	// CertNotAfter is the expiry of the receiver's leaf certificate, also
	// when verification failed (an expired certificate shows when it expired).
	CertNotAfter *time.Time `json:"certNotAfter,omitempty"`
}
