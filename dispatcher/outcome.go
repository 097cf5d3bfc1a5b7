package dispatcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// Outcome is how one delivery attempt ended. The same value is the decision
// (only OutcomeDelivered ends a delivery), the log line's "outcome", the
// attempt log's "outcome" and the metric's outcome label.
type Outcome string

// The outcomes of one attempt.
const (
	// OutcomeDelivered: the receiver answered exactly 200, the only answer the
	// provider's page counts as receipt.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeHTTPStatus: the receiver answered with any status but 200.
	OutcomeHTTPStatus Outcome = "http_status"
	// OutcomeTimeout: no complete answer within the per-attempt timeout.
	OutcomeTimeout Outcome = "timeout"
	// OutcomeDNS: the host did not resolve.
	OutcomeDNS Outcome = "dns"
	// OutcomeConnect: TCP connect failed or the connection broke (refused,
	// unreachable, reset) before an answer.
	OutcomeConnect Outcome = "connect"
	// OutcomeTLS: TLS handshake or certificate failure.
	OutcomeTLS Outcome = "tls"
	// OutcomeBlocked: the URL guard refused the resolved address at dial time.
	OutcomeBlocked Outcome = "blocked"
)

// Outcomes lists every Outcome, OutcomeDelivered first.
func Outcomes() []Outcome {
	return []Outcome{OutcomeDelivered, OutcomeHTTPStatus, OutcomeTimeout, OutcomeDNS, OutcomeConnect, OutcomeTLS, OutcomeBlocked}
}

// Valid reports whether o is one of Outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeDelivered, OutcomeHTTPStatus, OutcomeTimeout, OutcomeDNS, OutcomeConnect, OutcomeTLS, OutcomeBlocked:
		return true
	}
	return false
}

// HasResponse reports whether an attempt with this outcome got an HTTP answer
// (and so carries a status code).
func (o Outcome) HasResponse() bool { return o == OutcomeDelivered || o == OutcomeHTTPStatus }

// StatusError is a response other than 200.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("receiver answered %d, want 200", e.Code) }

// Classify maps the result of one attempt to its Outcome: nil is
// OutcomeDelivered, a *StatusError OutcomeHTTPStatus, and a transport error
// the class of its cause.
func Classify(err error) Outcome {
	var (
		statusErr *StatusError
		dnsErr    *net.DNSError
		recErr    tls.RecordHeaderError
		alertErr  tls.AlertError
		verErr    *tls.CertificateVerificationError
		unkAuth   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostErr   x509.HostnameError
		netErr    net.Error
	)
	switch {
	case err == nil:
		return OutcomeDelivered
	case errors.As(err, &statusErr):
		return OutcomeHTTPStatus
	case errors.Is(err, urlguard.ErrForbidden):
		return OutcomeBlocked
	case errors.As(err, &dnsErr):
		return OutcomeDNS
	case errors.As(err, &recErr), errors.As(err, &alertErr), errors.As(err, &verErr),
		errors.As(err, &unkAuth), errors.As(err, &invalid), errors.As(err, &hostErr):
		return OutcomeTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return OutcomeTimeout
	default:
		return OutcomeConnect
	}
}
