package dispatcher

// Result is how the API answered one delivery request: the metric label of
// webhook_enqueued_total.
type Result string

// The results of one enqueue request (or one batch item).
const (
	ResultAccepted    Result = "accepted"    // stored in the queue (202)
	ResultDuplicate   Result = "duplicate"   // a delivery with this id exists; nothing stored (409)
	ResultInvalid     Result = "invalid"     // refused by validation (400, 413, 415)
	ResultRefused     Result = "refused"     // the URL guard refused the webhook (422)
	ResultUnavailable Result = "unavailable" // Redis could not take the task (503)
)

// Results lists every Result.
func Results() []Result {
	return []Result{ResultAccepted, ResultDuplicate, ResultInvalid, ResultRefused, ResultUnavailable}
}

// Valid reports whether r is one of Results.
func (r Result) Valid() bool {
	switch r {
	case ResultAccepted, ResultDuplicate, ResultInvalid, ResultRefused, ResultUnavailable:
		return true
	}
	return false
}
