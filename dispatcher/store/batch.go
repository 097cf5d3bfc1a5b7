package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReservedMany is Reserved for every id of ids in one pipeline: one round
// trip on one Redis; on a cluster go-redis splits the pipeline by node, one
// round trip per primary involved, sent concurrently. reserved[i] answers
// ids[i]; errs is nil when every check was answered, else errs[i] is the
// error of ids[i] (nil for an id whose reads were all answered: on a
// cluster with one primary down only that primary's ids fail).
func (s *Store) ReservedMany(ctx context.Context, ids []string) (reserved []bool, errs []error) {
	reserved = make([]bool, len(ids))
	if len(ids) == 0 {
		return reserved, nil
	}
	failed := make([]*redis.IntCmd, len(ids))
	markers := make([][]*redis.StringCmd, len(ids))
	// The pipeline's own error is the first of its commands' errors; each
	// id is judged by its own commands' answers.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			failed[i] = p.Exists(ctx, s.keys.failed(s.tag(id), id))
			markers[i] = s.queueDeliveredLookup(ctx, p, id)
		}
		return nil
	})
	since := time.Now().Add(-s.window())
	for i, id := range ids {
		e := failed[i].Err()
		if e == nil {
			for _, c := range markers[i] {
				if ce := c.Err(); ce != nil && !errors.Is(ce, redis.Nil) {
					e = ce
					break
				}
			}
		}
		if e != nil {
			if errs == nil {
				errs = make([]error, len(ids))
			}
			errs[i] = fmt.Errorf("check reservation of %s: %w", id, e)
			continue
		}
		if failed[i].Val() > 0 {
			reserved[i] = true
			continue
		}
		_, ok, merr := newestMarker(markers[i], since)
		if merr != nil {
			if errs == nil {
				errs = make([]error, len(ids))
			}
			errs[i] = fmt.Errorf("check reservation of %s: %w", id, merr)
			continue
		}
		reserved[i] = ok
	}
	return reserved, errs
}

// WaitReplicasForMany is WaitReplicasFor for the deliveries with ids, with
// one WAIT per primary involved instead of one per delivery: WAIT on a
// primary covers every write made to it before (the replication stream is
// the primary's, whatever key or connection wrote), so one barrier write
// and WAIT after all of ids' tasks are stored covers all those on that
// primary. The primaries' WAITs run concurrently. errs[i] is the error of
// ids[i]; errs is nil when every wait succeeded (or n <= 0).
func (s *Store) WaitReplicasForMany(ctx context.Context, ids []string, n int, timeout time.Duration) (errs []error) {
	if n <= 0 || len(ids) == 0 {
		return nil
	}
	// One tag per primary: on one Redis (or Sentinel) every tag is the same
	// primary; on a cluster, tags group by the node serving their slot.
	type group struct {
		tag string
		idx []int
	}
	byTag := map[string][]int{}
	for i, id := range ids {
		t := s.tag(id)
		byTag[t] = append(byTag[t], i)
	}
	groups := map[string]*group{}
	var order []string
	for tag, idx := range byTag {
		node, err := s.nodeOf(ctx, s.keys.barrier(tag))
		if err != nil {
			if errs == nil {
				errs = make([]error, len(ids))
			}
			for _, i := range idx {
				errs[i] = fmt.Errorf("wait for replicas: %w", err)
			}
			continue
		}
		g := groups[node]
		if g == nil {
			g = &group{tag: tag}
			groups[node] = g
			order = append(order, node)
		}
		g.idx = append(g.idx, idx...)
	}
	results := make([]error, len(order))
	var wg sync.WaitGroup
	for k, node := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k] = s.waitReplicas(ctx, groups[node].tag, n, timeout)
		}()
	}
	wg.Wait()
	for k, node := range order {
		if results[k] == nil {
			continue
		}
		if errs == nil {
			errs = make([]error, len(ids))
		}
		for _, i := range groups[node].idx {
			errs[i] = results[k]
		}
	}
	return errs
}

// nodeOf names the node that serves key: its address on a cluster (the
// primary of key's slot), "" on one Redis or Sentinel (one primary).
func (s *Store) nodeOf(ctx context.Context, key string) (string, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return "", nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return "", fmt.Errorf("find the primary of %s: %w", key, err)
	}
	return node.Options().Addr, nil
}
