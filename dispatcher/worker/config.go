package worker

import (
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
)

// ServerOptions are the settings of ServerConfig. Zero values are the
// documented defaults.
type ServerOptions struct {
	Concurrency int // concurrent deliveries; 0 means 100
	// Queues are the queues this server polls (one of Layout.Groups); nil
	// means the single queue of one shard (the zero queue.Layout's Names).
	Queues   map[string]int
	Schedule schedule.Schedule // zero means schedule.Production
	// PollInterval is asynq's TaskCheckInterval, ForwardInterval its
	// DelayedTaskCheckInterval; 0 means asynq's defaults (1 s, 5 s).
	PollInterval    time.Duration
	ForwardInterval time.Duration
	// ShutdownTimeout is how long Shutdown waits for running handlers; 0
	// means asynq's default (8 s).
	ShutdownTimeout time.Duration
	Logger          asynq.Logger // nil means asynq's default logger
	LogLevel        asynq.LogLevel
}

// ServerConfig returns the asynq.Config a worker runs with: the queues from
// o.Queues (or the single default queue), RetryDelayFunc from the schedule, and IsFailure, which keeps
// deferrals from spending attempts. They are set together here because any
// one without the others breaks the retry promise (without IsFailure every
// deferral silently spends an attempt).
func ServerConfig(o ServerOptions) asynq.Config {
	if o.Concurrency <= 0 {
		o.Concurrency = 100
	}
	if o.Schedule == (schedule.Schedule{}) {
		o.Schedule = schedule.Production
	}
	if o.Queues == nil {
		o.Queues = queue.Layout{}.Names()
	}
	return asynq.Config{
		Concurrency:              o.Concurrency,
		Queues:                   o.Queues,
		RetryDelayFunc:           RetryDelay(o.Schedule),
		IsFailure:                IsFailure,
		Logger:                   o.Logger,
		LogLevel:                 o.LogLevel,
		ShutdownTimeout:          o.ShutdownTimeout,
		TaskCheckInterval:        o.PollInterval,
		DelayedTaskCheckInterval: o.ForwardInterval,
	}
}

// IsFailure tells asynq which errors spend one of the attempts: all but a
// deferral. Pass it as asynq.Config.IsFailure (ServerConfig does).
func IsFailure(err error) bool { return !errors.Is(err, dispatcher.ErrDeferred) }

// RetryDelay adapts a schedule to asynq.Config.RetryDelayFunc: n is the number
// of retries so far. A deferral comes back after the wait it carries (asynq
// does not count deferrals, so n cannot tell how often a task was deferred).
func RetryDelay(s schedule.Schedule) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var de *dispatcher.DeferError
		if errors.As(err, &de) {
			return de.Delay
		}
		if errors.Is(err, dispatcher.ErrDeferred) {
			return limiter.MinDefer
		}
		if d, ok := s.Delay(n); ok {
			return d
		}
		return s[len(s)-1] // asynq archives before asking past the end
	}
}
