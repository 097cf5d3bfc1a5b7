package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/metrics"
)

// errEvicting is the readiness error while Redis may evict keys.
var errEvicting = errors.New("redis may evict keys (maxmemory-policy is not noeviction): accepted deliveries can be lost")

// redisPolicy watches the Redis settings that decide whether an accepted
// delivery can vanish: the eviction policy, persistence and evicted_keys.
// Its Err is the readiness verdict.
type redisPolicy struct {
	store *store.Store
	log   *slog.Logger
	m     *metrics.Metrics
	allow bool // ALLOW_EVICTING_REDIS

	mu          sync.Mutex
	err         error
	warnedRead  bool
	warnedDisk  bool
	lastEvicted int64
	evicting    bool
}

// Err is non-nil while Redis may evict keys and ALLOW_EVICTING_REDIS is off.
func (p *redisPolicy) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// start checks once before the process serves: an evicting Redis is refused
// unless allowed. A Redis that will not say (INFO refused) is a warning.
func (p *redisPolicy) start(ctx context.Context) error {
	pol, ok := p.check(ctx)
	if ok && pol.Evicting() && !p.allow {
		return fmt.Errorf("redis: maxmemory-policy is %q with maxmemory %d bytes: Redis may evict accepted deliveries; "+
			"set maxmemory-policy noeviction (or ALLOW_EVICTING_REDIS=true to run anyway and lose data)", pol.MaxmemoryPolicy, pol.Maxmemory)
	}
	return nil
}

// run re-checks every interval until ctx ends (a policy changed at run time,
// keys evicted).
func (p *redisPolicy) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.check(ctx)
		}
	}
}

// check reads the policy, records it and logs what changed; ok is false when
// Redis would not say.
func (p *redisPolicy) check(ctx context.Context) (store.RedisPolicy, bool) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	pol, err := p.store.RedisPolicy(cctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if !p.warnedRead && ctx.Err() == nil {
			p.warnedRead = true
			p.log.Warn("cannot read the Redis eviction policy and persistence (INFO refused or Redis down); make sure maxmemory-policy is noeviction", "error", err)
		}
		return store.RedisPolicy{}, false
	}
	persistent, known := pol.Persistent()
	p.m.SetRedisPolicy(pol.Evicting(), pol.EvictedKeys, persistent, known)

	if pol.Evicting() != p.evicting {
		if pol.Evicting() {
			p.log.Error("REDIS MAY EVICT KEYS: accepted deliveries can vanish without a trace", "maxmemory_policy", pol.MaxmemoryPolicy,
				"maxmemory", pol.Maxmemory, "allow_evicting_redis", p.allow)
		} else {
			p.log.Info("redis eviction policy is safe again", "maxmemory_policy", pol.MaxmemoryPolicy)
		}
	}
	p.evicting = pol.Evicting()
	p.err = nil
	if p.evicting && !p.allow {
		p.err = errEvicting
	}
	if pol.EvictedKeys > p.lastEvicted {
		p.log.Error("redis evicted keys: deliveries may have been lost", "evicted_keys", pol.EvictedKeys, "since_last_check", pol.EvictedKeys-p.lastEvicted)
	}
	p.lastEvicted = pol.EvictedKeys
	if !p.warnedDisk {
		switch {
		case known && !persistent:
			p.warnedDisk = true
			p.log.Error("REDIS PERSISTENCE IS OFF (no AOF, no RDB snapshots): a Redis restart loses every queued delivery")
		case !known:
			p.warnedDisk = true
			p.log.Warn("cannot tell whether Redis persists to disk (AOF off, CONFIG GET refused); make sure snapshots or AOF are on")
		}
	}
	return pol, true
}
