package worker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// Signer signs one attempt: the Standard Webhooks headers for id, this
// attempt's time ts and the exact body bytes, with the signer's own "v1a"
// keys and the given "v1" secrets. signature.Signer satisfies it.
type Signer interface {
	Sign(id string, ts time.Time, body []byte, secrets ...signature.Secret) (signature.Headers, error)
}

// secretRetry is how soon a delivery whose secret could not be read comes
// back, without spending an attempt.
const secretRetry = 5 * time.Second

// deliverySecret reads d's "v1" secret from the store, one GET, only when the
// task says it has one (d.Signed). A read error defers the task without
// spending an attempt, except on the final attempt, which goes out without
// the v1 entry (a receiver that wants it answers non-200 and the delivery
// is failed and redeliverable). A missing secret (expired, deleted) is
// logged and the attempt goes out without the v1 entry.
func (h *Handler) deliverySecret(ctx context.Context, d dispatcher.Delivery, final bool) (signature.Secret, error) {
	if !d.Signed || h.Store == nil {
		return signature.Secret{}, nil
	}
	sec, ok, err := h.Store.Secret(ctx, d.ID)
	switch {
	case err != nil && !final:
		h.log().WarnContext(ctx, "cannot read signing secret; attempt deferred", keyDeliveryID, d.ID, "error", err)
		return signature.Secret{}, fmt.Errorf("deliver %s: %w", d.ID, &dispatcher.DeferError{Delay: secretRetry})
	case err != nil:
		h.log().ErrorContext(ctx, "cannot read signing secret; final attempt sent without its v1 signature", keyDeliveryID, d.ID, "error", err)
	case !ok:
		h.log().WarnContext(ctx, "signing secret missing; attempt sent without its v1 signature", keyDeliveryID, d.ID)
	}
	return sec, nil
}

// signRequest sets webhook-id (d.ID, the same on every attempt),
// webhook-timestamp (ts, this attempt) and webhook-signature on hdr, next
// to the documented headers. With no Signer and no secret it sets nothing:
// the request stays exactly as the provider's page documents it.
func signRequest(s Signer, hdr http.Header, id string, ts time.Time, body []byte, sec signature.Secret) error {
	var secrets []signature.Secret
	if !sec.IsZero() {
		secrets = []signature.Secret{sec}
	}
	if s == nil {
		if secrets == nil {
			return nil
		}
		s = signature.Signer{}
	}
	sh, err := s.Sign(id, ts, body, secrets...)
	if err != nil {
		return fmt.Errorf("sign %s: %w", id, err)
	}
	sh.Set(hdr)
	return nil
}
