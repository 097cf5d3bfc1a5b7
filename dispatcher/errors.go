package dispatcher

import (
	"errors"
	"fmt"
	"time"
)

// Errors the queue service returns; the API maps them to status codes.
var (
	ErrDuplicate   = errors.New("dispatcher: delivery already exists")    // 409
	ErrUnavailable = errors.New("dispatcher: queue unavailable")          // 503
	ErrNotFound    = errors.New("dispatcher: delivery not found")         // 404
	ErrInProgress  = errors.New("dispatcher: delivery still in progress") // 409
	ErrBadCursor   = errors.New("dispatcher: invalid cursor")             // 400
)

// ErrDeferred means the destination's concurrency cap was full: the attempt
// was not made and not counted, and the task comes back later.
var ErrDeferred = errors.New("dispatcher: destination busy, attempt deferred")

// DeferError is a deferral with the wait the limiter booked for it.
type DeferError struct{ Delay time.Duration }

func (e *DeferError) Error() string {
	return fmt.Sprintf("%v; next try in %s", ErrDeferred, e.Delay.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrDeferred) true.
func (e *DeferError) Is(target error) bool { return target == ErrDeferred }
