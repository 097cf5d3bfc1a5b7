package store

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// RedisPolicy is what the dispatcher needs to know of the Redis it runs on
// to keep its promise (an accepted delivery ends delivered or listed failed):
// whether Redis may evict keys, whether it persists, and how many keys it
// has evicted.
type RedisPolicy struct {
	// MaxmemoryPolicy and Maxmemory (bytes, 0 = no limit) are INFO memory's
	// maxmemory_policy and maxmemory.
	MaxmemoryPolicy string
	Maxmemory       int64
	// AOF is INFO persistence's aof_enabled.
	AOF bool
	// Save is CONFIG GET save ("" = no RDB snapshots); SaveKnown is false
	// when Redis refused CONFIG GET (managed Redis often does).
	Save      string
	SaveKnown bool
	// EvictedKeys is INFO stats' evicted_keys since Redis started.
	EvictedKeys int64
}

// Evicting reports whether Redis may evict keys once full: any policy but
// noeviction with a memory limit. Evicted keys are accepted deliveries lost
// without a trace (asynq's task hashes, the failed records).
func (p RedisPolicy) Evicting() bool { return p.Maxmemory > 0 && p.MaxmemoryPolicy != "noeviction" }

// Persistent reports whether Redis writes its data to disk (AOF or RDB
// snapshots); known is false when that cannot be told (CONFIG GET refused
// and AOF off).
func (p RedisPolicy) Persistent() (persistent, known bool) {
	if p.AOF {
		return true, true
	}
	if !p.SaveKnown {
		return false, false
	}
	return strings.TrimSpace(p.Save) != "", true
}

// RedisPolicy reads INFO (memory, persistence, stats) and CONFIG GET save.
// A refused CONFIG GET only leaves SaveKnown false; a refused INFO is an error.
func (s *Store) RedisPolicy(ctx context.Context) (RedisPolicy, error) {
	info, err := s.rdb.Info(ctx).Result()
	if err != nil {
		return RedisPolicy{}, fmt.Errorf("read redis INFO: %w", err)
	}
	var p RedisPolicy
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		switch k {
		case "maxmemory_policy":
			p.MaxmemoryPolicy = v
		case "maxmemory":
			p.Maxmemory, _ = strconv.ParseInt(v, 10, 64)
		case "aof_enabled":
			p.AOF = v == "1"
		case "evicted_keys":
			p.EvictedKeys, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if p.MaxmemoryPolicy == "" {
		return RedisPolicy{}, fmt.Errorf("read redis INFO: no maxmemory_policy in the answer")
	}
	if cfg, err := s.rdb.ConfigGet(ctx, "save").Result(); err == nil {
		p.Save, p.SaveKnown = cfg["save"], true
	}
	return p, nil
}
