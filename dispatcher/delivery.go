package dispatcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TypeDeliver is the asynq task type of one webhook delivery.
const TypeDeliver = "webhook:deliver"

// Delivery is what one task carries: where to POST and the exact body bytes,
// fixed at enqueue time.
type Delivery struct {
	ID         string          `json:"id"`
	Webhook    string          `json:"webhook"`
	EnqueuedAt time.Time       `json:"enqueuedAt"`
	Body       json.RawMessage `json:"body"`
	// Signed says the delivery has a per-delivery "v1" signing secret in the
	// store, so the worker reads it (one Redis GET) before each attempt;
	// false costs nothing. It is in the task payload; the secret is not.
	Signed bool `json:"signed,omitempty"`
	// Secret is the per-delivery secret on its way from the API to the store
	// (queue.Service.Enqueue writes it there); the zero Secret for none. It
	// is never encoded: not in the task payload, not in a FailedRecord, and
	// it prints redacted (signature.Secret).
	Secret signature.Secret `json:"-"`
}

// ErrBadTask marks a task whose payload cannot be read: retrying cannot fix it.
var ErrBadTask = errors.New("dispatcher: malformed task payload")

// EncodeTask serialises d as the asynq task payload: JSON, so the queue stays
// readable in asynqmon, built by appending so that the body bytes are copied
// untouched (an encoder would re-scan and re-compact them on every enqueue).
// d.Secret is never written; a delivery with one (or with Signed set) gets
// "signed":true. It fails only when d.Body is not valid JSON.
func EncodeTask(d Delivery) ([]byte, error) {
	if !json.Valid(d.Body) {
		return nil, fmt.Errorf("encode task %s: body is not JSON", d.ID)
	}
	b := make([]byte, 0, len(d.Body)+len(d.Webhook)+len(d.ID)+80)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, d.ID)
	b = append(b, `,"webhook":`...)
	b = appendJSONString(b, d.Webhook)
	b = append(b, `,"enqueuedAt":"`...)
	b = d.EnqueuedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","body":`...)
	b = append(b, d.Body...)
	if d.Signed || !d.Secret.IsZero() {
		b = append(b, `,"signed":true`...)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (the API
// refuses anything else), so only quotes, backslashes and control bytes need
// escaping.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// DecodeTask reads a payload written by EncodeTask. Errors wrap ErrBadTask.
func DecodeTask(payload []byte) (Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(payload, &d); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrBadTask, err)
	}
	if d.ID == "" || d.Webhook == "" || len(d.Body) == 0 {
		return Delivery{}, fmt.Errorf("%w: missing id, webhook or body", ErrBadTask)
	}
	return d, nil
}

// NewTask builds the asynq task for d (type TypeDeliver, payload EncodeTask(d)).
func NewTask(d Delivery) (*asynq.Task, error) {
	payload, err := EncodeTask(d)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeDeliver, payload), nil
}
