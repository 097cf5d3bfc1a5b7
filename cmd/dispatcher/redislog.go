package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// redisLog receives go-redis's own messages (dial failures, pool and sentinel
// notices), which it otherwise prints as plain text on stderr, outside the
// JSON log. go-redis has one process-wide logger, so the adapter is
// installed once and writes to the logger of the server running now.
var (
	redisLog        atomic.Pointer[slog.Logger]
	redisLoggerOnce sync.Once
)

type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if log := redisLog.Load(); log != nil {
		log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
	}
}

// routeRedisLogs sends go-redis's messages to log from now on.
func routeRedisLogs(log *slog.Logger) {
	redisLog.Store(log)
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{}) })
}

// redisAddr names the Redis server(s) of opt for logs and errors: addresses
// and the sentinel master name only, never a password.
func redisAddr(opt asynq.RedisConnOpt) string {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return o.Addr
	case asynq.RedisFailoverClientOpt:
		return "sentinel " + strings.Join(o.SentinelAddrs, ",") + " master " + o.MasterName
	case asynq.RedisClusterClientOpt:
		return "cluster " + strings.Join(o.Addrs, ",")
	}
	return "redis"
}
