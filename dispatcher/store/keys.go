package store

import "strconv"

// keyspace builds every Redis key the store uses; nothing else in the
// dispatcher names a key outside asynq's. With shards untagged (one queue on
// one Redis, the default) keys are
//
//	webhook:attempts:<id>         list of JSON Attempt entries, oldest first
//	webhook:failed:<id>           JSON FailedRecord
//	webhook:failed                sorted set of failed ids, scored by failure time (Unix ms)
//	webhook:secret:<id>           a delivery's "v1" signing secret (whsec_ text); the attempt log's lifetime
//	webhook:delivered:<day>:<b>   hash of delivered markers: id → deliveredAt (Unix ms), for ids
//	                              delivered on UTC day <day> (days since 1970-01-01) whose id
//	                              hashes to bucket <b>; expires DEDUPE_WINDOW after the day ends
//	webhook:replication-barrier   counter written before WAIT (see WaitReplicas)
//	webhook:readyz                short-lived key Ready writes
//	webhook:cap:{<dest>}          sorted set of the fleet-wide cap's slot holders of
//	                              destination dest (scheme://host:port), scored by lease expiry
//	webhook:reconcile-lock        short lock: one reconciler pass at a time across the fleet
//	webhook:reconcile-nudge       flag: the next pass also walks all task hashes (asynq reported a failed move)
//
// The reconciler also repairs asynq's own keys of one queue (see asynqKeys);
// they are named here after asynq v0.26's internal/base, and all carry the
// queue's hash tag, so a script over one queue's keys is cluster-safe.
//
// With tagged shards (Redis Cluster, or QUEUE_SHARDS > 1) every key carries
// the hash tag of the delivery's queue after the prefix, so it lives in the
// slot of the task's own asynq keys and every multi-key operation stays in
// one slot: "webhook:{webhooks:3:5}:attempts:<id>", one failed index and one
// barrier per shard ("webhook:{webhooks:3:5}:failed").
type keyspace struct {
	prefix string
}

var defaultKeyspace = keyspace{prefix: "webhook:"}

// tagged returns the prefix with tag ("" or "{queue}") and its separator.
func (k keyspace) tagged(tag string) string {
	if tag == "" {
		return k.prefix
	}
	return k.prefix + tag + ":"
}

func (k keyspace) attempts(tag, id string) string { return k.tagged(tag) + "attempts:" + id }
func (k keyspace) failed(tag, id string) string   { return k.tagged(tag) + "failed:" + id }
func (k keyspace) secret(tag, id string) string   { return k.tagged(tag) + "secret:" + id }
func (k keyspace) failedIndex(tag string) string  { return k.tagged(tag) + "failed" }
func (k keyspace) barrier(tag string) string      { return k.tagged(tag) + "replication-barrier" }
func (k keyspace) ready(tag string) string        { return k.tagged(tag) + "readyz" }
func (k keyspace) cap(dest string) string         { return k.prefix + "cap:{" + dest + "}" }

func (k keyspace) delivered(tag string, day int64, bucket uint32) string {
	return k.tagged(tag) + "delivered:" + strconv.FormatInt(day, 10) + ":" + strconv.FormatUint(uint64(bucket), 10)
}

// CapKey is the key of destination dest's holder set for the fleet-wide
// per-destination cap (limiter.Fleet): one key per destination, in a slot of
// its own choosing (the destination is the hash tag).
func CapKey(dest string) string { return defaultKeyspace.cap(dest) }

func (k keyspace) reconcileLock() string { return k.prefix + "reconcile-lock" }

// asynqKeys are asynq v0.26's keys of one queue (internal/base), all with
// the hash tag {queue}.
type asynqKeys struct{ queue string }

func (a asynqKeys) prefix() string     { return "asynq:{" + a.queue + "}:" }
func (a asynqKeys) active() string     { return a.prefix() + "active" }
func (a asynqKeys) lease() string      { return a.prefix() + "lease" }
func (a asynqKeys) pending() string    { return a.prefix() + "pending" }
func (a asynqKeys) scheduled() string  { return a.prefix() + "scheduled" }
func (a asynqKeys) retry() string      { return a.prefix() + "retry" }
func (a asynqKeys) archived() string   { return a.prefix() + "archived" }
func (a asynqKeys) completed() string  { return a.prefix() + "completed" }
func (a asynqKeys) taskPrefix() string { return a.prefix() + "t:" }
func (a asynqKeys) task(id string) string {
	return a.taskPrefix() + id
}

func (k keyspace) reconcileNudge() string { return k.prefix + "reconcile-nudge" }
