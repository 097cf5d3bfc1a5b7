package worker

import "net/http"

// markReplayable lets net/http send req again on a fresh connection when a
// reused keep-alive connection turns out dead before any byte of the answer
// arrived: a receiver that closes idle connections (Node's keepAliveTimeout,
// a load balancer's idle timeout) just as the request is written. Without it
// a POST is never replayed and such a race spends an attempt, although the
// receiver's application never saw the request.
//
// net/http treats a POST as replayable when its Header map holds the key
// "Idempotency-Key" and its body can be rewound (GetBody, which
// http.NewRequest sets for a *bytes.Reader); a nil value sends no such header
// on the wire (net/http Transport doc, "Idempotency-Key"; Request.isReplayable
// and persistConn.shouldRetryRequest in transport.go). The headers a receiver
// sees stay exactly the documented ones.
//
// What is replayed, and what never is: net/http replays only on a reused
// connection (never a fresh one: a receiver that hangs up on every request
// gets one try), only when no byte of the response was read (the connection
// gave EOF or a read error before the status line), and only before the
// attempt's context ends. A request that got any answer, even a partial
// status line, is never replayed. A receiver that read the whole request and
// then died without answering a byte can see it twice; the published contract
// already says a webhook may arrive more than once (deduplicate by id), and
// the replay is part of the same attempt, not an extra one.
func markReplayable(req *http.Request) {
	req.Header["Idempotency-Key"] = nil
}
