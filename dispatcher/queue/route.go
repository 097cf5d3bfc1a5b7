package queue

// DefaultQueue is the asynq queue that holds deliveries when there is one
// shard (QUEUE_SHARDS=1), and the prefix of the shards' names otherwise.
// asynq's own tools (the asynq CLI, asynqmon) show them under these names.
const DefaultQueue = "webhooks"

// Route returns the asynq queue that holds the delivery with generation id
// id: its shard's queue. Every lookup by id goes through it.
func (l Layout) Route(id string) string {
	names := l.list()
	return names[shardOf(id, len(names))]
}

// Names returns every queue that holds deliveries, with asynq's priority for
// each: what an asynq.Server must poll (asynq.Config.Queues) and what the
// queue gauges read.
func (l Layout) Names() map[string]int {
	names := l.list()
	out := make(map[string]int, len(names))
	for _, q := range names {
		out[q] = 1
	}
	return out
}
