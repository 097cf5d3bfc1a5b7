package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// asynqLogger adapts slog to asynq's Logger interface.
type asynqLogger struct{ log *slog.Logger }

func (l asynqLogger) Debug(args ...any) { l.log.Debug(fmt.Sprint(args...), "component", "asynq") }
func (l asynqLogger) Info(args ...any)  { l.log.Info(fmt.Sprint(args...), "component", "asynq") }
func (l asynqLogger) Warn(args ...any)  { l.log.Warn(fmt.Sprint(args...), "component", "asynq") }
func (l asynqLogger) Error(args ...any) { l.log.Error(fmt.Sprint(args...), "component", "asynq") }

// Fatal is called by asynq only when it cannot go on; it exits like log.Fatal.
func (l asynqLogger) Fatal(args ...any) {
	l.log.Log(context.Background(), slog.LevelError+4, fmt.Sprint(args...), "component", "asynq")
	os.Exit(1)
}
