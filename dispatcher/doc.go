// Package dispatcher is the vocabulary of webhook delivery, shared by every
// room of the dispatcher: a Delivery and its asynq task codec, an Attempt and
// its typed Outcome, the State a delivery is in, the Result of an enqueue,
// and the errors the rooms hand each other.
//
// One enum drives the decision, the log line, the attempt log and the metric:
// the worker classifies an attempt with Classify, stores the Outcome in the
// attempt log, logs it and hands it to the metrics package, which ranges over
// Outcomes to create its series. Nothing restates these lists.
//
// The rooms, each in its own package, with what they may touch:
//
//	dispatcher/store    all Redis access outside asynq (attempt log, failed records, health, replica WAIT); every key built in one file
//	dispatcher/queue    enqueue, status, listing and redelivery over asynq's Client/Inspector and the store; the only place that knows queue names
//	dispatcher/limiter  the per-destination concurrency cap behind a two-method interface
//	dispatcher/worker   the asynq handler, the guarded HTTP client and the one constructor of asynq.Config
//	dispatcher/reconcile  repairs what asynq leaves behind (stuck, orphaned, unrecorded deliveries), run by workers
//	dispatcher/api      the HTTP API over a small interface of the queue service
//
// This package does no I/O: values in, values out.
package dispatcher
