package queue

// DefaultQueue is the asynq queue that holds deliveries when there is one
// shard (QUEUE_SHARDS=1), and the prefix of the shards' names otherwise.
// asynq's own tools (the asynq CLI, asynqmon) show them under these names.
const DefaultQueue = "webhooks"

// route returns the asynq queue that holds the delivery with generation id
// id: its shard's queue (see SetShards). Every lookup by id goes through it.
func route(id string) string {
	l := get()
	return l.names[shardOf(id, len(l.names))]
}

// Route is route for the other rooms (the reconciler, the CLI): the queue of
// the delivery with generation id id.
func Route(id string) string { return route(id) }

// Names returns every queue that holds deliveries, with asynq's priority for
// each: what an asynq.Server must poll (asynq.Config.Queues) and what the
// queue gauges read.
func Names() map[string]int {
	names := get().names
	out := make(map[string]int, len(names))
	for _, q := range names {
		out[q] = 1
	}
	return out
}
