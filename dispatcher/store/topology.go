package store

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Layout is the Redis deployment as one read found it: on a cluster every
// primary that serves slots, else the one server the client talks to.
type Layout struct {
	Cluster   bool
	Primaries []Primary // sorted by Addr; outside a cluster exactly one, with Addr ""
}

// Primary is one primary of a Layout.
type Primary struct {
	// Addr is host:port as the cluster announces the node (its TLS port on a
	// TLS-only cluster); "" outside a cluster, where the client knows the
	// server by the address it was given.
	Addr  string
	Slots []SlotRange // cluster only
	// Replicas counts the replicas reported healthy: health "online" in
	// CLUSTER SHARDS (not "fail", nor "loading", which Redis reports for a
	// replica at replication offset 0: still syncing, or on a new idle
	// cluster until the primary's first replication ping), listed at all in
	// CLUSTER SLOTS (which leaves failed nodes out), state=online in INFO
	// replication outside a cluster.
	Replicas int
}

// SlotRange is a range of hash slots, both ends included.
type SlotRange struct{ Start, End int }

// PrimaryOf returns the address of the primary serving slot, and false when
// no primary serves it (or outside a cluster, where there are no slots).
func (l Layout) PrimaryOf(slot int) (string, bool) {
	for _, p := range l.Primaries {
		for _, r := range p.Slots {
			if slot >= r.Start && slot <= r.End {
				return p.Addr, true
			}
		}
	}
	return "", false
}

// WithoutReplica counts the primaries with no healthy replica: those whose
// loss loses what they acknowledged but had not yet replicated.
func (l Layout) WithoutReplica() int {
	n := 0
	for _, p := range l.Primaries {
		if p.Replicas == 0 {
			n++
		}
	}
	return n
}

// Layout reads the deployment's layout in one command: CLUSTER SHARDS on a
// cluster (CLUSTER SLOTS on servers older than Redis 7, which lack it), INFO
// replication on one Redis or a Sentinel-managed primary. The command goes
// to one node, so on a cluster it is that node's view (the gossip of the
// last cluster-node-timeout or so). Errors are Redis' or the context's.
func (s *Store) Layout(ctx context.Context) (Layout, error) {
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		info, err := s.rdb.Info(ctx, "replication").Result()
		if err != nil {
			return Layout{}, fmt.Errorf("read INFO replication: %w", err)
		}
		return Layout{Primaries: []Primary{{Replicas: onlineReplicas(info)}}}, nil
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err == nil {
		return layoutFromShards(shards), nil
	}
	if !isUnknownCommand(err) {
		return Layout{}, fmt.Errorf("read CLUSTER SHARDS: %w", err)
	}
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return Layout{}, fmt.Errorf("read CLUSTER SLOTS: %w", err)
	}
	return layoutFromSlots(slots), nil
}

// isUnknownCommand reports whether err is Redis refusing a command it does
// not have (ERR unknown subcommand / unknown command).
func isUnknownCommand(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown")
}

// layoutFromShards turns a CLUSTER SHARDS reply into a Layout: one primary
// per shard that serves slots (a shard without slots serves nothing), its
// replicas counted when their health is "online" ("fail" and "loading"
// ones are not).
func layoutFromShards(shards []redis.ClusterShard) Layout {
	l := Layout{Cluster: true}
	for _, sh := range shards {
		if len(sh.Slots) == 0 {
			continue
		}
		var p Primary
		found := false
		for _, n := range sh.Nodes {
			switch n.Role {
			case "master":
				p.Addr, found = nodeAddr(n), true
			case "replica", "slave":
				if n.Health == "online" {
					p.Replicas++
				}
			}
		}
		if !found {
			continue
		}
		for _, r := range sh.Slots {
			p.Slots = append(p.Slots, SlotRange{int(r.Start), int(r.End)})
		}
		l.Primaries = append(l.Primaries, p)
	}
	sortPrimaries(l.Primaries)
	return l
}

// nodeAddr is a CLUSTER SHARDS node's host:port: its announced endpoint (IP,
// hostname or "?" when unknown, then its IP) and its port, or its TLS port on
// a TLS-only cluster.
func nodeAddr(n redis.Node) string {
	host := n.Endpoint
	if host == "" || host == "?" {
		host = n.IP
	}
	port := n.Port
	if port == 0 {
		port = n.TLSPort
	}
	return net.JoinHostPort(host, strconv.FormatInt(port, 10))
}

// layoutFromSlots turns a CLUSTER SLOTS reply (one entry per slot range:
// primary first, then its replicas, failed nodes left out) into a Layout.
func layoutFromSlots(slots []redis.ClusterSlot) Layout {
	l := Layout{Cluster: true}
	byAddr := map[string]int{}
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			continue
		}
		addr := s.Nodes[0].Addr
		i, ok := byAddr[addr]
		if !ok {
			i = len(l.Primaries)
			byAddr[addr] = i
			l.Primaries = append(l.Primaries, Primary{Addr: addr, Replicas: len(s.Nodes) - 1})
		}
		l.Primaries[i].Slots = append(l.Primaries[i].Slots, SlotRange{s.Start, s.End})
	}
	sortPrimaries(l.Primaries)
	return l
}

func sortPrimaries(ps []Primary) {
	slices.SortFunc(ps, func(a, b Primary) int { return cmp.Compare(a.Addr, b.Addr) })
}

// onlineReplicas counts the slaveN lines of an INFO replication reply whose
// state is online (connected and past the initial sync).
func onlineReplicas(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "slave") || name == "slave_read_only" {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimPrefix(name, "slave")); err != nil {
			continue
		}
		for _, kv := range strings.Split(val, ",") {
			if kv == "state=online" {
				n++
			}
		}
	}
	return n
}
