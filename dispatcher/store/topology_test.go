package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestLayoutFromShards(t *testing.T) {
	node := func(ip string, port int64, role, health string) redis.Node {
		return redis.Node{Endpoint: ip, IP: ip, Port: port, Role: role, Health: health}
	}
	shards := []redis.ClusterShard{
		{ // listed first but sorts last: primaries are ordered by address
			Slots: []redis.SlotRange{{Start: 10923, End: 16383}},
			Nodes: []redis.Node{node("127.0.0.1", 7002, "master", "online"), node("127.0.0.1", 7005, "replica", "fail")},
		},
		{
			Slots: []redis.SlotRange{{Start: 0, End: 5460}, {Start: 16000, End: 16000}},
			Nodes: []redis.Node{node("127.0.0.1", 7003, "replica", "online"), node("127.0.0.1", 7000, "master", "online"), node("127.0.0.1", 7006, "replica", "loading")},
		},
		{
			Slots: []redis.SlotRange{{Start: 5461, End: 10922}},
			Nodes: []redis.Node{{Endpoint: "?", IP: "127.0.0.1", TLSPort: 7001, Role: "master", Health: "online"}, node("127.0.0.1", 7004, "replica", "online")},
		},
		{ // a primary that serves no slot serves no queue
			Nodes: []redis.Node{node("127.0.0.1", 7009, "master", "online")},
		},
	}
	got := layoutFromShards(shards)
	want := Layout{Cluster: true, Primaries: []Primary{
		{Addr: "127.0.0.1:7000", Slots: []SlotRange{{0, 5460}, {16000, 16000}}, Replicas: 1},
		{Addr: "127.0.0.1:7001", Slots: []SlotRange{{5461, 10922}}, Replicas: 1},
		{Addr: "127.0.0.1:7002", Slots: []SlotRange{{10923, 16383}}, Replicas: 0},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layoutFromShards =\n%+v\nwant\n%+v", got, want)
	}
	if n := got.WithoutReplica(); n != 1 {
		t.Errorf("WithoutReplica = %d, want 1 (7002's only replica failed)", n)
	}
	for _, tt := range []struct {
		slot int
		want string
		ok   bool
	}{
		{0, "127.0.0.1:7000", true}, {5460, "127.0.0.1:7000", true}, {5461, "127.0.0.1:7001", true},
		{16000, "127.0.0.1:7000", true}, {16001, "127.0.0.1:7002", true}, {16384, "", false},
	} {
		if addr, ok := got.PrimaryOf(tt.slot); addr != tt.want || ok != tt.ok {
			t.Errorf("PrimaryOf(%d) = %q, %v; want %q, %v", tt.slot, addr, ok, tt.want, tt.ok)
		}
	}
}

func TestLayoutFromSlots(t *testing.T) {
	slots := []redis.ClusterSlot{
		{Start: 5461, End: 10922, Nodes: []redis.ClusterNode{{Addr: "10.0.0.2:6379"}}},
		{Start: 0, End: 5460, Nodes: []redis.ClusterNode{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.4:6379"}, {Addr: "10.0.0.5:6379"}}},
		{Start: 10923, End: 16383, Nodes: []redis.ClusterNode{{Addr: "10.0.0.1:6379"}, {Addr: "10.0.0.4:6379"}, {Addr: "10.0.0.5:6379"}}},
	}
	got := layoutFromSlots(slots)
	want := Layout{Cluster: true, Primaries: []Primary{
		{Addr: "10.0.0.1:6379", Slots: []SlotRange{{0, 5460}, {10923, 16383}}, Replicas: 2},
		{Addr: "10.0.0.2:6379", Slots: []SlotRange{{5461, 10922}}, Replicas: 0},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("layoutFromSlots =\n%+v\nwant\n%+v", got, want)
	}
}

func TestOnlineReplicas(t *testing.T) {
	tests := []struct {
		info string
		want int
	}{
		{"# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n", 0},
		{"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
			"slave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=0\r\n" +
			"slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n" +
			"slave_read_only:1\r\n", 1},
		{"role:master\nslave0:ip=a,port=1,state=online,offset=1,lag=1\nslave1:ip=b,port=2,state=online,offset=1,lag=0\n", 2},
		{"", 0},
	}
	for _, tt := range tests {
		if got := onlineReplicas(tt.info); got != tt.want {
			t.Errorf("onlineReplicas(%q) = %d, want %d", tt.info, got, tt.want)
		}
	}
}

func TestLayoutSingleRedisUnreachable(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, time.Hour)
	mr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.Layout(ctx); err == nil {
		t.Fatal("Layout with Redis gone: no error")
	}
}
