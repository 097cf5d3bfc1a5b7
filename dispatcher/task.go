// Package dispatcher queues webhook deliveries in Redis through asynq and
// delivers them: the enqueue side, the worker handler, the attempt log and the
// HTTP API that the generation pipeline and operators use.
package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// TypeDeliver is the asynq task type of one webhook delivery.
const TypeDeliver = "webhook:deliver"

// DefaultQueue is the asynq queue that holds deliveries. asynq's own tools
// (the asynq CLI, asynqmon) show it under this name.
const DefaultQueue = "webhooks"

// Delivery is what one task carries: where to POST and the exact body bytes,
// fixed at enqueue time.
type Delivery struct {
	ID         string          `json:"id"`
	Webhook    string          `json:"webhook"`
	EnqueuedAt time.Time       `json:"enqueuedAt"`
	Body       json.RawMessage `json:"body"`
}

// ErrBadTask marks a task whose payload cannot be read: retrying cannot fix it.
var ErrBadTask = errors.New("dispatcher: malformed task payload")

// encodeTask serialises d as the asynq task payload. JSON keeps the queue
// readable in asynqmon; HTML escaping is off so the raw body survives the round
// trip byte for byte.
func encodeTask(d Delivery) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode task %s: %w", d.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func decodeTask(payload []byte) (Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(payload, &d); err != nil {
		return Delivery{}, fmt.Errorf("%w: %w", ErrBadTask, err)
	}
	if d.ID == "" || d.Webhook == "" || len(d.Body) == 0 {
		return Delivery{}, fmt.Errorf("%w: missing id, webhook or body", ErrBadTask)
	}
	return d, nil
}

// newTask builds the asynq task for d.
func newTask(d Delivery) (*asynq.Task, error) {
	payload, err := encodeTask(d)
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeDeliver, payload), nil
}
