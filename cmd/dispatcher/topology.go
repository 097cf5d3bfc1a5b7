package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/metrics"
)

// Topology watcher timing: one read of the layout (one command to one node)
// every 5 s per process, each bounded by 2 s so a frozen node counts as an
// error before the next read is due.
const (
	topologyInterval = 5 * time.Second
	topologyTimeout  = 2 * time.Second
)

// topologyWatcher reads the Redis layout periodically and exports it as
// metrics: primaries, primaries without a healthy replica, which primary
// serves each queue shard, failed reads and the time of the last good one.
// go-redis reloads its own copy of the layout every second but drops the
// errors of that reload (ClusterClient's lazy reload), so this read, through
// the same client, is what stands for it on the dashboard and in alerts.
type topologyWatcher struct {
	store  *store.Store
	kind   string // metrics.TopologySingle, TopologySentinel or TopologyCluster
	server string // the primary's name outside a cluster (address or sentinel master), never a password
	queues []string
	m      *metrics.Metrics
	log    *slog.Logger
}

// run reads at once, then every interval, until ctx ends.
func (w *topologyWatcher) run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last metrics.Topology
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, topologyTimeout)
		l, err := w.store.Layout(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			w.m.TopologyReadFailed()
			if !failing {
				w.log.Warn("redis topology not read", "topology", w.kind, "error", err)
			}
			failing = true
		default:
			t := topologyReading(l, w.kind, w.server, w.queues)
			w.m.SetTopology(t, time.Now())
			if failing || t.Primaries != last.Primaries || t.WithoutReplica != last.WithoutReplica {
				w.log.Info("redis topology", "topology", t.Kind, "primaries", t.Primaries,
					"primaries_without_replica", t.WithoutReplica)
			}
			failing, last = false, t
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// topologyReading turns a layout into what the metrics export. On a cluster
// each queue maps to the primary serving its slot: every asynq key of queue
// q carries the hash tag {q}, so the queue's slot is that of its name (a
// queue whose slot no primary serves, mid-failover, is left out). Outside a
// cluster every queue maps to server.
func topologyReading(l store.Layout, kind, server string, queues []string) metrics.Topology {
	t := metrics.Topology{Kind: kind, Primaries: len(l.Primaries), WithoutReplica: l.WithoutReplica(),
		QueuePrimary: make(map[string]string, len(queues))}
	for _, q := range queues {
		if !l.Cluster {
			t.QueuePrimary[q] = server
			continue
		}
		if addr, ok := l.PrimaryOf(queue.Slot(q)); ok {
			t.QueuePrimary[q] = addr
		}
	}
	return t
}

// newTopologyWatcher returns the watcher for the Redis behind opt, mapping
// each of queues (the layout's shard names) to its primary. The embedded development Redis is not watched (it has no INFO
// replication).
func newTopologyWatcher(opt asynq.RedisConnOpt, st *store.Store, queues []string, m *metrics.Metrics, log *slog.Logger) *topologyWatcher {
	w := &topologyWatcher{store: st, kind: metrics.TopologySingle, queues: queues, m: m, log: log}
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		w.server = o.Addr
	case asynq.RedisFailoverClientOpt:
		w.kind, w.server = metrics.TopologySentinel, "sentinel master "+o.MasterName
	case asynq.RedisClusterClientOpt:
		w.kind = metrics.TopologyCluster
	}
	return w
}
