package api

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

// DefaultMaxInflightBytes is the default cap on request body bytes the API
// holds at once (API_MAX_INFLIGHT_BYTES): 64 one-MiB batches.
const DefaultMaxInflightBytes = 64 << 20

// inflightRetryAfter is the Retry-After, in seconds, of a request refused
// because the cap is reached: a batch is usually answered well within it.
const inflightRetryAfter = 1

// inflight caps the request body bytes held by requests being served. A
// request with a body reserves its Content-Length, or MaxBatchBytes when the
// length is unknown (chunked), bounded by MaxBatchBytes (the largest body any
// route reads), from the moment it is routed until its handler returns, which
// covers reading, decoding and enqueueing it. A request that does not fit is
// answered 503 with Retry-After and its body is never read. Requests without
// a body (GET, HEAD) are never refused. When nothing is in flight a request
// is admitted whatever its size, so a cap below MaxBatchBytes still serves
// one at a time.
//
// The cap counts body bytes: decoding holds a few times that again, so peak
// memory is a small multiple of max, not max.
type inflight struct {
	max  int64
	mu   sync.Mutex
	used int64
}

// limitInflight wraps next in the cap max; max == 0 means
// DefaultMaxInflightBytes and max < 0 no cap.
func limitInflight(next http.Handler, max int64) http.Handler {
	if max < 0 {
		return next
	}
	if max == 0 {
		max = DefaultMaxInflightBytes
	}
	l := &inflight{max: max}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reservation(r)
		if n == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if !l.take(n) {
			w.Header().Set("Retry-After", strconv.Itoa(inflightRetryAfter))
			// The unread body is not worth draining: close the connection.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusServiceUnavailable, "busy",
				fmt.Sprintf("the API is holding %d bytes of request bodies; retry shortly", l.max))
			return
		}
		defer l.give(n)
		next.ServeHTTP(w, r)
	})
}

// reservation is how many bytes r's body may take.
func reservation(r *http.Request) int64 {
	switch {
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		return 0
	case r.ContentLength < 0 || r.ContentLength > MaxBatchBytes:
		return MaxBatchBytes
	default:
		return r.ContentLength
	}
}

func (l *inflight) take(n int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used > 0 && l.used+n > l.max {
		return false
	}
	l.used += n
	return true
}

func (l *inflight) give(n int64) {
	l.mu.Lock()
	l.used -= n
	l.mu.Unlock()
}
