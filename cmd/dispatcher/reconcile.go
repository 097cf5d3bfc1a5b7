package main

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/reconcile"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/metrics"
)

// newReconciler wires the worker's reconciler from the configuration.
func newReconciler(cfg config, st *store.Store, insp *asynq.Inspector, svc *queue.Service, log *slog.Logger, m *metrics.Metrics) *reconcile.Reconciler {
	var queues []string
	for q := range svc.Layout.Names() {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	retention := cfg.Retention
	if retention <= 0 {
		retention = queue.DefaultRetention
	}
	return &reconcile.Reconciler{
		Store: st, Inspector: insp, Queues: queues, Schedule: cfg.Schedule,
		Interval:        cfg.reconcileInterval(),
		Grace:           cfg.ReconcileGrace,
		Retention:       retention,
		FailedRetention: cfg.FailedRetention,
		Purge: func(ctx context.Context, before time.Time) (int, error) {
			return svc.PurgeFailed(ctx, before, false)
		},
		Log:     log.With("component", "reconcile"),
		Metrics: m,
	}
}

// reconcileInterval is RECONCILE_INTERVAL, or its default.
func (c config) reconcileInterval() time.Duration {
	if c.ReconcileInterval <= 0 {
		return reconcile.DefaultInterval
	}
	return c.ReconcileInterval
}
