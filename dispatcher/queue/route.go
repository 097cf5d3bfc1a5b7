package queue

// DefaultQueue is the asynq queue that holds deliveries. asynq's own tools
// (the asynq CLI, asynqmon) show it under this name.
const DefaultQueue = "webhooks"

// route returns the asynq queue that holds the delivery with generation id
// id. Every lookup by id goes through it, so sharding deliveries over several
// queues changes this function (and Names) only.
func route(id string) string { return DefaultQueue }

// Names returns every queue that holds deliveries, with asynq's priority for
// each: what an asynq.Server must poll (asynq.Config.Queues) and what the
// queue gauges read.
func Names() map[string]int { return map[string]int{DefaultQueue: 1} }
