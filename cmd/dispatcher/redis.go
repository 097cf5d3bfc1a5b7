package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
)

// Cluster client settings (issue 16's measurements on a 3+3 cluster): with
// go-redis' default 60 s layout reload a failover stalled every queue ~55 s;
// with 1 s, throughput was back at promotion.
const (
	clusterReloadInterval = time.Second
	redisDialTimeout      = 2 * time.Second
)

// errClusterURL is returned for a redis-cluster:// URL that does not parse;
// like every REDIS_URL error it never echoes the URL, which may hold a password.
var errClusterURL = errors.New("config: REDIS_URL is not a valid redis-cluster://[:password@]host:port,host:port,... URI")

// isClusterURL reports whether u names a Redis Cluster (redis-cluster://,
// rediss-cluster://).
func isClusterURL(u string) bool {
	return strings.HasPrefix(u, "redis-cluster://") || strings.HasPrefix(u, "rediss-cluster://")
}

// parseClusterURL parses redis-cluster://[[user]:password@]h1:p1,h2:p2,…
// (rediss-cluster:// for TLS; no path, no query) into asynq's cluster option,
// which asynqmon takes as is and which clusterClient turns into the shared
// client. asynq.ParseRedisURI has no cluster scheme.
func parseClusterURL(raw string) (asynq.RedisClusterClientOpt, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	var opt asynq.RedisClusterClientOpt
	if scheme == "rediss-cluster" {
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12} // ServerName: each node's host, filled in by crypto/tls
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(rest[:i], ":")
		var err error
		if opt.Username, err = url.PathUnescape(user); err != nil {
			return opt, errClusterURL
		}
		if hasPass {
			if opt.Password, err = url.PathUnescape(pass); err != nil {
				return opt, errClusterURL
			}
		}
		rest = rest[i+1:]
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/?#") {
		return opt, errClusterURL
	}
	for _, addr := range strings.Split(rest, ",") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return opt, errClusterURL
		}
		opt.Addrs = append(opt.Addrs, addr)
	}
	return opt, nil
}

// clusterClient returns the one *redis.ClusterClient a process shares
// between asynq's client, inspector and servers and the store.
func clusterClient(o asynq.RedisClusterClientOpt, poolSize int) *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:     o.Addrs,
		Username:  o.Username,
		Password:  o.Password,
		TLSConfig: o.TLSConfig,
		// Per node: every in-flight delivery may hold a connection for its
		// attempt-log write, and any node may hold all of them.
		PoolSize:                   poolSize,
		ClusterStateReloadInterval: clusterReloadInterval,
		ContextTimeoutEnabled:      true,
		DialTimeout:                redisDialTimeout,
	})
}

// topology is what the start-up self-check found behind REDIS_URL.
type topology struct {
	kind      string // "single", "sentinel" or "cluster"
	primaries int    // cluster only
}

// checkTopology asks Redis what it is and returns an error when REDIS_URL's
// scheme does not fit: a plain redis:// URL pointed at a cluster node (every
// key of another node would answer MOVED) or a cluster URL at a plain Redis.
// Unreachable Redis is not an error here: the process starts and /readyz
// reports it until Redis comes.
func checkTopology(ctx context.Context, rdb redis.UniversalClient, sentinel bool) (topology, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		slots, err := cc.ClusterSlots(ctx).Result()
		if err != nil {
			if strings.Contains(err.Error(), "cluster support disabled") {
				return topology{}, errors.New("config: REDIS_URL is redis-cluster:// but Redis is not a cluster (cluster support disabled): use redis:// or redis-sentinel://")
			}
			return topology{kind: "cluster"}, fmt.Errorf("read the cluster layout: %w", err)
		}
		primaries := map[string]bool{}
		for _, s := range slots {
			if len(s.Nodes) > 0 {
				primaries[s.Nodes[0].Addr] = true
			}
		}
		return topology{kind: "cluster", primaries: len(primaries)}, nil
	}
	kind := "single"
	if sentinel {
		kind = "sentinel"
	}
	info, err := rdb.Info(ctx, "cluster").Result()
	if err != nil {
		return topology{kind: kind}, fmt.Errorf("read INFO cluster: %w", err)
	}
	if strings.Contains(info, "cluster_enabled:1") {
		return topology{}, errors.New("config: REDIS_URL points at a Redis Cluster node: use redis-cluster://host:port,host:port,... (rediss-cluster:// for TLS) so every shard is reached on its own primary")
	}
	return topology{kind: kind}, nil
}

// logTopology runs checkTopology and logs what it found; only a wrong scheme
// is returned as an error.
func logTopology(ctx context.Context, log *slog.Logger, rdb redis.UniversalClient, sentinel bool) error {
	t, err := checkTopology(ctx, rdb, sentinel)
	if err != nil && t.kind == "" {
		return err
	}
	if err != nil {
		log.Warn("redis topology not checked (unreachable, or INFO refused)", "topology", t.kind, "error", err)
		return nil
	}
	if t.kind == "cluster" {
		log.Info("redis topology", "topology", t.kind, "primaries", t.primaries)
		return nil
	}
	log.Info("redis topology", "topology", t.kind)
	return nil
}

// newLimiter returns the per-destination cap the settings ask for: none when
// HOST_CONCURRENCY is 0, per process (in memory) or fleet-wide (in Redis,
// with leases of DELIVERY_TIMEOUT plus 5 s: an attempt never holds its slot
// longer, and a killed worker's slots come back after at most that).
func newLimiter(cfg config, rdb redis.UniversalClient) limiter.Limiter {
	if cfg.HostConcurrency <= 0 || cfg.HostScope == "process" {
		return limiter.New(cfg.HostConcurrency)
	}
	return limiter.NewFleet(rdb, store.CapKey, cfg.HostConcurrency, cfg.DeliveryTimeout+5*time.Second)
}
