package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// asynqLogger adapts slog to asynq's Logger interface. When moveFailed is
// set it is called for asynq's reports that it could not move a task between
// its lists (v0.26's processor and syncer: "Could not move task …", "Could
// not remove task …"), which a script stopped on NOT FOUND can leave
// orphaned; asynq gives no other signal, so this is a hint for the
// reconciler, whose periodic walk stays the guarantee.
type asynqLogger struct {
	log        *slog.Logger
	moveFailed func()
}

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...), "component", "asynq") }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...), "component", "asynq") }
func (l asynqLogger) Warn(args ...any)  { l.report(slog.LevelWarn, fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.report(slog.LevelError, fmt.Sprint(args...)) }

func (l asynqLogger) report(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg, "component", "asynq")
	if l.moveFailed != nil && (strings.HasPrefix(msg, "Could not move task") || strings.HasPrefix(msg, "Could not remove task")) {
		l.moveFailed()
	}
}

// Fatal is called by asynq only when it cannot go on; it exits like log.Fatal.
func (l asynqLogger) Fatal(args ...any) {
	l.log.Log(context.Background(), slog.LevelError+4, fmt.Sprint(args...), "component", "asynq")
	os.Exit(1)
}
