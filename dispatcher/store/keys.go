package store

// keyspace builds every Redis key the store uses; nothing else in the
// dispatcher names a key outside asynq's. Keys are
//
//	webhook:attempts:{id}         list of JSON Attempt entries, oldest first
//	webhook:failed:{id}           JSON FailedRecord
//	webhook:failed                sorted set of failed ids, scored by failure time (Unix ms)
//	webhook:secret:{id}           a delivery's "v1" signing secret (whsec_ text); the attempt log's lifetime
//	webhook:replication-barrier   counter written before WAIT (see WaitReplicas)
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
func (k keyspace) secret(id string) string   { return k.prefix + "secret:" + id }
func (k keyspace) failedIndex() string       { return k.prefix + "failed" }
func (k keyspace) barrier() string           { return k.prefix + "replication-barrier" }
