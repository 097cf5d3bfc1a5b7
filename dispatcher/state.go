package dispatcher

import "time"

// State is where a delivery stands, as the API and the CLI report it.
type State string

// The states of a delivery.
const (
	StatePending   State = "pending"   // waiting in the queue for a worker
	StateScheduled State = "scheduled" // waiting for a time in the future
	StateActive    State = "active"    // a worker is making an attempt now
	StateRetrying  State = "retrying"  // an attempt failed; the next one is scheduled
	StateDelivered State = "delivered" // the receiver answered 200
	StateFailed    State = "failed"    // every attempt of the cycle failed; listed and redeliverable
)

// States lists every State in the order a delivery passes through them.
func States() []State {
	return []State{StatePending, StateScheduled, StateActive, StateRetrying, StateDelivered, StateFailed}
}

// Status is what the API and the CLI report about one delivery.
type Status struct {
	ID            string     `json:"id"`
	State         State      `json:"state"`
	Webhook       string     `json:"webhook,omitempty"`
	EnqueuedAt    *time.Time `json:"enqueuedAt,omitempty"`
	AttemptCount  int        `json:"attemptCount"`
	NextAttemptAt *time.Time `json:"nextAttemptAt"`
	DeliveredAt   *time.Time `json:"deliveredAt,omitempty"`
	FailedAt      *time.Time `json:"failedAt"`
	LastError     string     `json:"lastError,omitempty"`
	Attempts      []Attempt  `json:"attempts"`
}
