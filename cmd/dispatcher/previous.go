package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
)

// errPreviousURL is returned for a PREVIOUS_REDIS_URL that does not parse;
// like every Redis URL error it never echoes the URL (it may hold a password).
var errPreviousURL = errors.New("PREVIOUS_REDIS_URL is not a valid redis://, rediss://, redis-sentinel:// or redis-cluster:// URI")

// parseRedisURL parses any scheme REDIS_URL accepts into asynq's connection
// option; the error names no part of raw.
func parseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	if isClusterURL(raw) {
		opt, err := parseClusterURL(raw)
		if err != nil {
			return nil, errPreviousURL
		}
		return opt, nil
	}
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		return nil, errPreviousURL
	}
	return opt, nil
}

// connectPrevious opens the datastore being migrated from
// (PREVIOUS_REDIS_URL with PREVIOUS_QUEUE_SHARDS), read only: the API refuses
// ids it holds and answers GET from it (queue.Previous). It returns nil and a
// no-op when PREVIOUS_REDIS_URL is empty. The client honours context
// deadlines, so a stalled previous Redis costs an enqueue its
// EnqueueTimeout (then 503), not go-redis' read timeouts and retries.
// Unreachable at start is not an error (enqueues answer 503 until it comes);
// a scheme that does not fit the server (redis:// at a cluster node) is.
func connectPrevious(ctx context.Context, cfg config, log *slog.Logger) (queue.Previous, func(), error) {
	if cfg.PreviousRedisURL == "" {
		return nil, func() {}, nil
	}
	opt, err := parseRedisURL(cfg.PreviousRedisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	var rdb redis.UniversalClient
	if o, ok := opt.(asynq.RedisClusterClientOpt); ok {
		rdb = clusterClient(o, 32)
	} else {
		c, ok := opt.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, nil, errors.New("previous redis: unexpected client type")
		}
		if cl, ok := c.(*redis.Client); ok {
			cl.Options().ContextTimeoutEnabled = true
		}
		rdb = c
	}
	log = log.With("datastore", "previous")
	_, sentinel := opt.(asynq.RedisFailoverClientOpt)
	if err := logTopology(ctx, log, rdb, sentinel); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("PREVIOUS_REDIS_URL: %w", err)
	}
	_, cluster := rdb.(*redis.ClusterClient)
	layout, err := queue.NewLayout(cfg.PreviousShards, cluster)
	if err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("config: PREVIOUS_QUEUE_SHARDS: %w", err)
	}
	st := store.New(rdb, 0)
	st.UseShards(layout.Tag, layout.Tags())
	st.Dedupe(cfg.DedupeWindow, cfg.MarkerBuckets, 0)
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	prev := queue.NewPreviousStore(&queue.Service{
		Inspector: inspector, Store: st, Layout: layout,
		Retention: cfg.Retention, Schedule: cfg.Schedule,
	})
	log.Info("migration: ids in the previous datastore answer 409 and GET reads them there",
		"previous_queue_shards", layout.Shards())
	return prev, func() { st.Close(); rdb.Close() }, nil
}

// checkPrevious checks the migration settings: PREVIOUS_REDIS_URL parses,
// PREVIOUS_QUEUE_SHARDS is in range, and the two do not name this datastore
// itself (same URL and same shard count: nothing to migrate from). Errors
// never hold the URL.
func (c config) checkPrevious() []error {
	if c.PreviousRedisURL == "" {
		return nil
	}
	var errs []error
	if _, err := parseRedisURL(c.PreviousRedisURL); err != nil {
		errs = append(errs, err)
	}
	if c.PreviousShards > queue.MaxShards {
		errs = append(errs, fmt.Errorf("PREVIOUS_QUEUE_SHARDS: want at most %d, got %d", queue.MaxShards, c.PreviousShards))
	}
	if c.PreviousRedisURL == c.RedisURL && c.PreviousShards == c.QueueShards {
		errs = append(errs, errors.New("PREVIOUS_REDIS_URL with PREVIOUS_QUEUE_SHARDS names this datastore itself: set them to the datastore being moved away from"))
	} else if c.PreviousRedisURL == c.RedisURL {
		if q := sharedQueue(c.PreviousShards, c.QueueShards); q != "" {
			errs = append(errs, fmt.Errorf("PREVIOUS_QUEUE_SHARDS %d and QUEUE_SHARDS %d on the same Redis share queue %s: use a new datastore (or another database) for the new shard count", c.PreviousShards, c.QueueShards, q))
		}
	}
	return errs
}

// sharedQueue returns a queue name the layouts of a and b shards both use
// ("" when none, or when either count is out of range). Two shard counts on
// one datastore must not share a queue: each fleet would take the other's
// tasks and keys.
func sharedQueue(a, b int) string {
	la, errA := queue.NewLayout(a, false)
	lb, errB := queue.NewLayout(b, false)
	if errA != nil || errB != nil {
		return ""
	}
	names := la.Names()
	for _, q := range lb.NamesInOrder() {
		if _, ok := names[q]; ok {
			return q
		}
	}
	return ""
}
