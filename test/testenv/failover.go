package testenv

import (
	"context"
	"fmt"
	"time"
)

// AwaitFailover is WaitFailover for callers without a testing.TB (the
// benchmark): it polls FailedOver(old) every 50 ms and returns the promoted
// primary and how long the wait took, or an error after timeout or when ctx
// ends.
func (c *Cluster) AwaitFailover(ctx context.Context, old *Redis, timeout time.Duration) (*Redis, time.Duration, error) {
	start := time.Now()
	var promoted *Redis
	err := poll(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		var err error
		promoted, err = c.FailedOver(old)
		return err == nil, err
	})
	if err != nil {
		return nil, time.Since(start), fmt.Errorf("no failover of %s: %w", old.Addr(), err)
	}
	return promoted, time.Since(start), nil
}
