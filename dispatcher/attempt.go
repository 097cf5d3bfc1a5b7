package dispatcher

import "time"

// ResponseSnippetBytes is how much of each response body the attempt log keeps.
const ResponseSnippetBytes = 1024

// Attempt is one entry of the attempt log: one POST (or one refused dial).
type Attempt struct {
	// Attempt counts from 1 within a delivery cycle; a manual redelivery starts
	// a new cycle at 1.
	Attempt    int       `json:"attempt"`
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
