package store

// keyspace builds every Redis key the store uses; nothing else in the
// dispatcher names a key outside asynq's. Keys are
//
//	webhook:attempts:{id}         list of JSON Attempt entries, oldest first
//	webhook:failed:{id}           JSON FailedRecord
//	webhook:failed                sorted set of failed ids, scored by failure time (Unix ms)
//	webhook:replication-barrier   counter written before WAIT (see WaitReplicas)
//	webhook:reconcile-lock        short lock: one reconciler pass at a time across the fleet
//	webhook:reconcile-nudge       flag: the next pass also walks all task hashes (asynq reported a failed move)
//
// The reconciler also repairs asynq's own keys of one queue (see asynqKeys);
// they are named here after asynq v0.26's internal/base, and all carry the
// queue's hash tag, so a script over one queue's keys is cluster-safe.
//
// For Redis Cluster, a key that must share a slot with a task gets the task's
// hash tag between prefix and name ("webhook:{tag}:attempts:…"); today the
// tag is empty and the keys are exactly the ones above.
type keyspace struct {
	prefix string
}

var defaultKeyspace = keyspace{prefix: "webhook:"}

func (k keyspace) attempts(id string) string { return k.prefix + "attempts:" + id }
func (k keyspace) failed(id string) string   { return k.prefix + "failed:" + id }
func (k keyspace) failedIndex() string       { return k.prefix + "failed" }
func (k keyspace) barrier() string           { return k.prefix + "replication-barrier" }
func (k keyspace) reconcileLock() string     { return k.prefix + "reconcile-lock" }

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
