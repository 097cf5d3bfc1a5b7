package queue

import (
	"fmt"
	"hash/fnv"
	"strconv"
)

// Redis Cluster has 16384 hash slots; a key's slot is CRC16(key) mod 16384,
// where only the part between the first "{" and the next "}" is hashed when
// that part is not empty (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/).
const clusterSlots = 16384

// MaxShards bounds QUEUE_SHARDS: each shard needs a slot range of its own
// wide enough to pick a name in (16384/1024 = 16 slots).
const MaxShards = 1024

// ServerGroupMax is the most shards one asynq server polls: an idle asynq
// server runs ~60 Redis scripts per polled queue per second, and at 64 queues
// per server p99 Redis latency rose to 190 ms (issue 16's measurement).
const ServerGroupMax = 8

// Layout is how deliveries are spread over queues, and whether the store's
// keys carry their queue's hash tag. A process builds one per datastore from
// its shard count (NewLayout) and hands it to the queue service and the
// store (store.UseShards(l.Tag, l.Tags())); during a migration it holds two,
// one per datastore. The zero Layout is today's single queue "webhooks"
// with untagged keys, as NewLayout(1, false).
type Layout struct {
	names  []string // shard k's queue name; nil means [DefaultQueue]
	tagged bool     // store keys carry the shard's hash tag
}

// NewLayout spreads deliveries over n queues (1 <= n <= MaxShards). n == 1
// is today's single queue "webhooks"; n > 1 names shard k
// "webhooks:<k>:<s>" (ShardName). tagged makes the store put each
// delivery's keys in its shard's hash slot (required on Redis Cluster,
// implied by n > 1); with n == 1 and tagged false the store's keys are the
// untagged ones of earlier versions. Every process sharing a datastore must
// use the same n: a delivery's queue is a function of n.
func NewLayout(n int, tagged bool) (Layout, error) {
	if n < 1 || n > MaxShards {
		return Layout{}, fmt.Errorf("queue: shards: want 1..%d, got %d", MaxShards, n)
	}
	l := Layout{tagged: tagged || n > 1}
	if n > 1 {
		l.names = make([]string, n)
		for k := range n {
			l.names[k] = ShardName(k, n)
		}
	}
	return l, nil
}

// list returns the queue names in shard order (not a copy).
func (l Layout) list() []string {
	if len(l.names) == 0 {
		return []string{DefaultQueue}
	}
	return l.names
}

// Shards returns the number of queues deliveries are spread over.
func (l Layout) Shards() int { return len(l.list()) }

// ShardName returns the queue name of shard k of n (n > 1): "webhooks:<k>:<s>"
// with the smallest s >= 0 whose cluster slot lies in the middle half of the
// k-th of n equal slot ranges. A cluster whose slots are split evenly into
// contiguous ranges over its primaries (what `redis-cli --cluster create` and
// managed services do) then holds n/primaries shards on each primary, give or
// take one; plain names ("webhooks:0".."webhooks:15") landed 7/3/6 on three.
func ShardName(k, n int) string {
	lo := k * clusterSlots / n
	hi := (k + 1) * clusterSlots / n
	w := hi - lo
	lo, hi = lo+w/4, hi-w/4
	prefix := DefaultQueue + ":" + strconv.Itoa(k) + ":"
	for s := 0; ; s++ {
		name := prefix + strconv.Itoa(s)
		if slot := Slot(name); slot >= lo && slot < hi {
			return name
		}
	}
}

// shardOf returns the shard of generation id: FNV-1a of the id modulo the
// shard count, so it is stable across processes and releases.
func shardOf(id string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return int(h.Sum64() % uint64(n))
}

// Tag returns the hash tag the store puts in id's keys so they share the
// slot of id's queue ("{webhooks:3:5}"), or "" when keys are untagged.
func (l Layout) Tag(id string) string {
	if !l.tagged {
		return ""
	}
	return "{" + l.Route(id) + "}"
}

// Tags returns the hash tags of every shard, in shard order ([""] when keys
// are untagged): what the store ranges over for its per-shard indexes.
func (l Layout) Tags() []string { return l.TagsOf(l.list()) }

// TagsOf returns the hash tags of the given queues ([""] when keys are untagged).
func (l Layout) TagsOf(queues []string) []string {
	if !l.tagged {
		return []string{""}
	}
	out := make([]string, len(queues))
	for i, q := range queues {
		out[i] = "{" + q + "}"
	}
	return out
}

// NamesInOrder returns the queue names in shard order.
func (l Layout) NamesInOrder() []string {
	return append([]string(nil), l.list()...)
}

// Groups splits the shards into g contiguous groups of at most
// ServerGroupMax each, as asynq.Config.Queues values: one per asynq server
// of a worker process. g <= 0 means as few groups as allowed
// (ceil(shards/ServerGroupMax)); g is raised to that minimum and lowered to
// the shard count.
func (l Layout) Groups(g int) []map[string]int {
	names := l.list()
	g = max(g, (len(names)+ServerGroupMax-1)/ServerGroupMax)
	g = min(g, len(names))
	out := make([]map[string]int, g)
	for i := range g {
		lo, hi := i*len(names)/g, (i+1)*len(names)/g
		out[i] = make(map[string]int, hi-lo)
		for _, q := range names[lo:hi] {
			out[i][q] = 1
		}
	}
	return out
}

// Slot returns the Redis Cluster hash slot of key (CLUSTER KEYSLOT): CRC16
// (XMODEM) of the key, or of its hash tag when it has one, modulo 16384.
// go-redis keeps its own copy internal.
func Slot(key string) int {
	if s := indexByte(key, '{'); s >= 0 {
		if e := indexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key)) % clusterSlots
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the variant
// Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
