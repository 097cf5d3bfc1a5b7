package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// TestAttemptErrorsHideURLSecrets: a transport error names the URL; the
// attempt log and the error handed to asynq must not carry its path or query.
func TestAttemptErrorsHideURLSecrets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port: the dial is refused
	st := newTestStore(t)
	h := &Handler{
		Client:   NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32"))}),
		Store:    st,
		Schedule: schedule.Production,
		Timeout:  time.Second,
	}
	const secret = "s3cr3t-token"
	err = h.ProcessTask(context.Background(), testTask(t, "redact-1", "https://"+addr+"/hooks/"+secret+"?key="+secret))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("ProcessTask error %q carries the secret (or is nil)", err)
	}
	attempts, _ := st.Attempts(context.Background(), "redact-1")
	if len(attempts) != 1 || attempts[0].Outcome != dispatcher.OutcomeConnect {
		t.Fatalf("attempts = %+v, want one connect failure", attempts)
	}
	if strings.Contains(attempts[0].Error, secret) || !strings.Contains(attempts[0].Error, addr) {
		t.Errorf("attempt error %q: want the host, not the secret", attempts[0].Error)
	}
}

func TestRetryDelayAndIsFailure(t *testing.T) {
	f := RetryDelay(schedule.Production)
	for n := range schedule.Steps {
		want, _ := schedule.Delay(n)
		if got := f(n, errors.New("500"), nil); got != want {
			t.Errorf("RetryDelay(%d) = %s, want %s", n, got, want)
		}
	}
	deferred := fmt.Errorf("deliver x: %w", &dispatcher.DeferError{Delay: 7 * time.Second})
	if got := f(3, deferred, nil); got != 7*time.Second {
		t.Errorf("RetryDelay(deferred 7s) = %s, want 7s", got)
	}
	if got := f(3, dispatcher.ErrDeferred, nil); got != limiter.MinDefer {
		t.Errorf("RetryDelay(dispatcher.ErrDeferred) = %s, want %s", got, limiter.MinDefer)
	}
	if IsFailure(deferred) || !IsFailure(errors.New("500")) {
		t.Error("IsFailure: a deferral must not spend an attempt; anything else must")
	}
}

// TestServerConfigWiresRetryPolicy: the one constructor sets the queues, the
// schedule's delays and IsFailure together.
func TestServerConfigWiresRetryPolicy(t *testing.T) {
	cfg := ServerConfig(ServerOptions{})
	if cfg.IsFailure == nil || cfg.RetryDelayFunc == nil || len(cfg.Queues) == 0 || cfg.Concurrency != 100 {
		t.Fatalf("ServerConfig left retry policy unset: %+v", cfg)
	}
	if cfg.IsFailure(&dispatcher.DeferError{Delay: time.Second}) {
		t.Error("a deferral spends an attempt")
	}
	if got := cfg.RetryDelayFunc(0, errors.New("500"), nil); got != 5*time.Second {
		t.Errorf("first retry after %s, want the published 5s", got)
	}
}
