package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http/httptrace"
	"sync"
)

// attemptConn is the delivery client's raw connection (under TLS). The
// attempt that the transport last handed it to owns it; if that attempt's
// context ends while it still owns it, the connection is closed. This is the
// hard end of an attempt that does not depend on the shape of the answer:
// net/http stops watching the request's context once it hands back a
// 101 Switching Protocols stream, and any read or write still blocked on the
// socket fails at once when it is closed.
type attemptConn struct {
	net.Conn
	mu    sync.Mutex
	owner *attemptToken
}

// attemptToken identifies one attempt; only its address matters.
type attemptToken struct{ _ byte }

func (c *attemptConn) claim(t *attemptToken) {
	c.mu.Lock()
	c.owner = t
	c.mu.Unlock()
}

// closeIfOwner closes c unless another attempt has claimed it since: a
// connection that went back to the pool and on to the next attempt is not
// the late attempt's to close. (One that went back to the pool but is not
// claimed yet is closed; the transport then finds it dead before writing a
// byte and dials afresh: net/http retries a request on nothingWrittenError.)
func (c *attemptConn) closeIfOwner(t *attemptToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owner == t {
		_ = c.Conn.Close()
	}
}

// dialAttemptConn wraps dial so every connection it makes is an attemptConn.
func dialAttemptConn(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &attemptConn{Conn: c}, nil
	}
}

// holdConns returns ctx with an httptrace hook that claims every connection
// the transport gives the request (a replayed request may get more than one),
// and closes those it still owns once ctx ends. release stops the watch; call
// it when the attempt is over. Connections not made by dialAttemptConn (a
// client other than NewClient's) are left alone.
func holdConns(ctx context.Context) (_ context.Context, release func()) {
	token := &attemptToken{}
	var (
		mu   sync.Mutex
		held []*attemptConn
		done bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		done = true
		for _, c := range held {
			c.closeIfOwner(token)
		}
	})
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		c := asAttemptConn(info.Conn)
		if c == nil {
			return
		}
		c.claim(token)
		mu.Lock()
		defer mu.Unlock()
		held = append(held, c)
		if done { // ctx ended between the transport's choice and this hook
			c.closeIfOwner(token)
		}
	}}
	return httptrace.WithClientTrace(ctx, trace), func() { stop() }
}

func asAttemptConn(c net.Conn) *attemptConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ac, _ := c.(*attemptConn)
	return ac
}

// deadlineCause names the attempt's deadline as the cause of err once it has
// passed: the connection closed at the deadline by holdConns can surface as
// a read or write on a closed connection before net/http reports its own
// context error, and the outcome must still be timeout, not connect.
func deadlineCause(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
}
