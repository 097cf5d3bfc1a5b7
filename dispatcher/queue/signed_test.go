package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TestEnqueueSignedStoresSecretBesideTask: the secret goes to the store, the
// task payload only says "signed", and a redelivery from the failed record
// keeps both.
func TestEnqueueSignedStoresSecretBesideTask(t *testing.T) {
	svc, st := newTestService(t)
	ctx := context.Background()
	sec, err := signature.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := testDelivery("s.1")
	d.Secret = sec
	if err := svc.Enqueue(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, ok, err := st.Secret(ctx, "s.1")
	if err != nil || !ok || got.Reveal() != sec.Reveal() {
		t.Fatalf("stored secret: ok %v, err %v", ok, err)
	}
	info, err := svc.Inspector.GetTaskInfo(svc.Layout.Route("s.1"), "s.1")
	if err != nil {
		t.Fatal(err)
	}
	if payload := string(info.Payload); strings.Contains(payload, strings.TrimPrefix(sec.Reveal(), signature.PrefixSecret)) || !strings.Contains(payload, `"signed":true`) {
		t.Errorf("task payload %s: want the signed flag and no secret", payload)
	}

	// Failed and trimmed from asynq's archive: the record brings the flag back.
	task, _ := dispatcher.DecodeTask(info.Payload)
	if err := st.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: task, FailedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Inspector.DeleteTask(svc.Layout.Route("s.1"), "s.1"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Redeliver(ctx, "s.1"); err != nil {
		t.Fatal(err)
	}
	info, err = svc.Inspector.GetTaskInfo(svc.Layout.Route("s.1"), "s.1")
	if err != nil || !strings.Contains(string(info.Payload), `"signed":true`) {
		t.Fatalf("redelivered task %s, %v: want the signed flag", info.Payload, err)
	}
	if _, ok, _ := st.Secret(ctx, "s.1"); !ok {
		t.Error("redelivery lost the secret")
	}

	// Unsigned deliveries store no secret.
	if err := svc.Enqueue(ctx, testDelivery("u-1")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Secret(ctx, "u-1"); ok {
		t.Error("unsigned delivery has a secret")
	}
}
