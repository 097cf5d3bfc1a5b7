package dispatcher

import "time"

// ResponseSnippetBytes is how much of each response body the attempt log keeps.
const ResponseSnippetBytes = 1024

// Attempt is one entry of the attempt log: one POST (or one refused dial).
type Attempt struct {
	// Attempt counts from 1 within a delivery cycle; a manual redelivery starts
	// a new cycle at 1.
	Attempt int `json:"attempt"`
	// Cycle names the delivery cycle the attempt belongs to: the EnqueuedAt of
	// the task that made it (a redelivery enqueues a fresh task with a new
	// EnqueuedAt). Zero in entries written before cycles were recorded.
	Cycle      time.Time `json:"cycle,omitzero"`
	StartedAt  time.Time `json:"startedAt"`
	EndedAt    time.Time `json:"endedAt"`
	DurationMs float64   `json:"durationMs"`
	Outcome    Outcome   `json:"outcome"`
	// Status is the HTTP status code, 0 when no response arrived.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// ResponseBody is the first ResponseSnippetBytes of the response body.
	ResponseBody string `json:"responseBody,omitempty"`
}

// FailedRecord is what the store keeps of a delivery that used up its
// attempts. It lives outside asynq's archive, which trims itself (10,000 tasks
// or 90 days per queue in asynq v0.26), so a failed delivery is never dropped
// silently: it stays until it is redelivered.
type FailedRecord struct {
	Delivery
	FailedAt  time.Time `json:"failedAt"`
	LastError string    `json:"lastError"`
}

// InCycle reports whether a was made by the task of d's cycle (see Cycle).
// An entry without a cycle counts when it started at or after d.EnqueuedAt.
func (a Attempt) InCycle(d Delivery) bool {
	if !a.Cycle.IsZero() {
		return a.Cycle.Equal(d.EnqueuedAt)
	}
	return !d.EnqueuedAt.IsZero() && !a.StartedAt.Before(d.EnqueuedAt)
}

// DeliveredInCycle reports whether log (oldest first) holds a delivered
// attempt of d's cycle: the cycle is over, and another attempt of it would
// POST a webhook the receiver already acknowledged.
func DeliveredInCycle(log []Attempt, d Delivery) bool {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].InCycle(d) && log[i].Outcome == OutcomeDelivered {
			return true
		}
	}
	return false
}

// RanInCycle reports whether log holds attempt number n of d's cycle.
func RanInCycle(log []Attempt, d Delivery, n int) bool {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].InCycle(d) && log[i].Attempt == n {
			return true
		}
	}
	return false
}
