package main

import (
	"maps"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/metrics"
)

func TestTopologyReading(t *testing.T) {
	// CLUSTER KEYSLOT somekey = 11058, foo = 12182, bar = 5061 (redis.io's examples and redis-cli).
	cluster := store.Layout{Cluster: true, Primaries: []store.Primary{
		{Addr: "10.0.0.1:6379", Slots: []store.SlotRange{{Start: 0, End: 5460}}, Replicas: 1},
		{Addr: "10.0.0.2:6379", Slots: []store.SlotRange{{Start: 5461, End: 11058}}, Replicas: 0},
		{Addr: "10.0.0.3:6379", Slots: []store.SlotRange{{Start: 11059, End: 12000}}, Replicas: 2}, // 12001+ unserved
	}}
	tests := []struct {
		name   string
		layout store.Layout
		kind   string
		want   metrics.Topology
	}{
		{"cluster", cluster, metrics.TopologyCluster, metrics.Topology{Kind: metrics.TopologyCluster, Primaries: 3, WithoutReplica: 1,
			// foo's slot is served by no primary (mid-failover): left out, not guessed.
			QueuePrimary: map[string]string{"somekey": "10.0.0.2:6379", "bar": "10.0.0.1:6379"}}},
		{"single", store.Layout{Primaries: []store.Primary{{Replicas: 0}}}, metrics.TopologySingle, metrics.Topology{Kind: metrics.TopologySingle,
			Primaries: 1, WithoutReplica: 1, QueuePrimary: map[string]string{"somekey": "redis:6379", "foo": "redis:6379", "bar": "redis:6379"}}},
		{"sentinel", store.Layout{Primaries: []store.Primary{{Replicas: 2}}}, metrics.TopologySentinel, metrics.Topology{Kind: metrics.TopologySentinel,
			Primaries: 1, QueuePrimary: map[string]string{"somekey": "redis:6379", "foo": "redis:6379", "bar": "redis:6379"}}},
	}
	for _, tt := range tests {
		got := topologyReading(tt.layout, tt.kind, "redis:6379", []string{"somekey", "foo", "bar"})
		if got.Kind != tt.want.Kind || got.Primaries != tt.want.Primaries || got.WithoutReplica != tt.want.WithoutReplica ||
			!maps.Equal(got.QueuePrimary, tt.want.QueuePrimary) {
			t.Errorf("%s: topologyReading = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
