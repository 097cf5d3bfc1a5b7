package queue

import (
	"fmt"
	"math"
	"testing"
)

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"123456789", 0x31C3 % clusterSlots}, // the CRC-16/XMODEM check value
		{"foo", 12182},                       // CLUSTER KEYSLOT foo on Redis 7
		{"bar", 5061},
		{"{user1000}.following", 3443}, // examples of the cluster spec: the tag is hashed
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", Slot("foo{}{bar}")}, // an empty tag hashes the whole key
		{"foo{{bar}}zap", Slot("{bar")},
		{"asynq:{webhooks}:pending", Slot("webhooks")},
	}
	for _, tt := range tests {
		if got := Slot(tt.key); got != tt.want {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Errorf("Slot(foo{}{bar}) hashed the second tag")
	}
}

// redisCLISplit is how `redis-cli --cluster create` assigns slots to m
// primaries: contiguous ranges of 16384/m (integer division), the last
// taking the rest. It returns each range's first slot.
func redisCLISplit(m int) []int {
	per := float64(clusterSlots / m)
	firsts := make([]int, m)
	first, cursor := 0, 0.0
	for i := range m {
		firsts[i] = first
		last := int(math.Round(cursor + per - 1))
		if last > clusterSlots-1 || i == m-1 {
			last = clusterSlots - 1
		}
		first = last + 1
		cursor += per
	}
	return firsts
}

func TestShardNamesSpreadOverPrimaries(t *testing.T) {
	for _, m := range []int{3, 4, 6, 16} {
		firsts := redisCLISplit(m)
		for _, n := range []int{m, 2 * m, 16 * m, 48, 64} {
			if n < m {
				continue
			}
			count := make([]int, m)
			seen := map[string]bool{}
			for k := range n {
				name := ShardName(k, n)
				if seen[name] {
					t.Fatalf("n=%d: name %q twice", n, name)
				}
				seen[name] = true
				slot := Slot(name)
				p := 0
				for p+1 < m && slot >= firsts[p+1] {
					p++
				}
				count[p]++
			}
			lo, hi := n/m, (n+m-1)/m
			for p, c := range count {
				if c < lo || c > hi {
					t.Errorf("%d shards on %d primaries: primary %d holds %d, want %d..%d (all: %v)", n, m, p, c, lo, hi, count)
				}
			}
		}
	}
}

func TestRouteAndTags(t *testing.T) {
	l, err := NewLayout(1, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Route("gen_1"); got != DefaultQueue {
		t.Errorf("one shard: Route = %q, want %q", got, DefaultQueue)
	}
	if got := l.Tag("gen_1"); got != "" {
		t.Errorf("one untagged shard: Tag = %q, want empty (keys of earlier versions)", got)
	}
	if l, err = NewLayout(1, true); err != nil {
		t.Fatal(err)
	}
	if got := l.Tag("gen_1"); got != "{webhooks}" {
		t.Errorf("one tagged shard: Tag = %q, want {webhooks}", got)
	}
	for _, bad := range []int{0, -1, MaxShards + 1} {
		if _, err := NewLayout(bad, false); err == nil {
			t.Errorf("NewLayout(%d) = nil error, want an error", bad)
		}
	}

	if l, err = NewLayout(48, false); err != nil {
		t.Fatal(err)
	}
	perQueue := map[string]int{}
	for i := range 4800 {
		id := fmt.Sprintf("gen_%d", i)
		q := l.Route(id)
		if l.Route(id) != q {
			t.Fatalf("Route(%q) not stable", id)
		}
		if l.Tag(id) != "{"+q+"}" {
			t.Fatalf("Tag(%q) = %q, not the tag of its queue %q", id, l.Tag(id), q)
		}
		if Slot("webhook:"+l.Tag(id)+":attempts:"+id) != Slot(q) {
			t.Fatalf("keys of %q not in the slot of its queue", id)
		}
		perQueue[q]++
	}
	if len(perQueue) != 48 {
		t.Errorf("4800 ids used %d of 48 queues", len(perQueue))
	}
	for q, c := range perQueue {
		if c < 50 || c > 150 { // 100 expected; FNV-1a spreads far better than this
			t.Errorf("queue %s got %d of 4800 ids", q, c)
		}
	}
	if len(l.Names()) != 48 || len(l.Tags()) != 48 {
		t.Errorf("Names %d, Tags %d, want 48", len(l.Names()), len(l.Tags()))
	}
}

// The zero Layout is NewLayout(1, false), and two layouts live side by side
// in one process (a migration holds the old datastore's and the new one's).
func TestLayoutZeroAndSideBySide(t *testing.T) {
	one, err := NewLayout(1, false)
	if err != nil {
		t.Fatal(err)
	}
	var zero Layout
	if zero.Route("gen_1") != one.Route("gen_1") || zero.Tag("gen_1") != one.Tag("gen_1") ||
		fmt.Sprint(zero.Names()) != fmt.Sprint(one.Names()) || fmt.Sprint(zero.Tags()) != fmt.Sprint(one.Tags()) ||
		zero.Shards() != 1 || fmt.Sprint(zero.Groups(0)) != fmt.Sprint(one.Groups(0)) {
		t.Errorf("zero Layout differs from NewLayout(1, false)")
	}
	twelve, err := NewLayout(12, true)
	if err != nil {
		t.Fatal(err)
	}
	if twelve.Shards() != 12 || one.Shards() != 1 {
		t.Fatalf("Shards: %d and %d, want 12 and 1", twelve.Shards(), one.Shards())
	}
	moved := 0
	for i := range 100 {
		id := fmt.Sprintf("gen_%d", i)
		if one.Route(id) != DefaultQueue {
			t.Fatalf("one shard: Route(%q) = %q after building a 12-shard layout", id, one.Route(id))
		}
		if q := twelve.Route(id); q != ShardName(shardOf(id, 12), 12) {
			t.Fatalf("12 shards: Route(%q) = %q", id, q)
		}
		if twelve.Route(id) != DefaultQueue {
			moved++
		}
	}
	if moved != 100 {
		t.Errorf("%d of 100 ids routed to %s under 12 shards", 100-moved, DefaultQueue)
	}
}

func TestGroups(t *testing.T) {
	tests := []struct {
		shards, groups int
		want           []int // group sizes
	}{
		{1, 0, []int{1}},
		{1, 4, []int{1}},
		{48, 0, []int{8, 8, 8, 8, 8, 8}},
		{48, 2, []int{8, 8, 8, 8, 8, 8}}, // at most 8 per server
		{48, 12, []int{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}},
		{10, 3, []int{3, 3, 4}},
		{4, 9, []int{1, 1, 1, 1}},
	}
	for _, tt := range tests {
		l, err := NewLayout(tt.shards, false)
		if err != nil {
			t.Fatal(err)
		}
		gs := l.Groups(tt.groups)
		seen := map[string]bool{}
		var sizes []int
		for _, g := range gs {
			sizes = append(sizes, len(g))
			for q := range g {
				if seen[q] {
					t.Errorf("%d shards, %d groups: %s in two groups", tt.shards, tt.groups, q)
				}
				seen[q] = true
			}
		}
		if fmt.Sprint(sizes) != fmt.Sprint(tt.want) || len(seen) != tt.shards {
			t.Errorf("Groups(%d) of %d shards: sizes %v covering %d, want %v covering all", tt.groups, tt.shards, sizes, len(seen), tt.want)
		}
	}
}
