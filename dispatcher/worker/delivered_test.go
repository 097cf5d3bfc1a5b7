package worker

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// TestMarkerWrittenOnDelivery: a 200 leaves a delivered marker (deliveredAt
// the end of the attempt, to the millisecond); a 500 leaves none.
func TestMarkerWrittenOnDelivery(t *testing.T) {
	status := http.StatusInternalServerError
	srv, _ := tlsReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) })
	st := newTestStore(t)
	t.Cleanup(st.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	h := &Handler{Client: NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: roots}), Store: st, Timeout: 2 * time.Second}
	ctx := context.Background()

	if err := h.ProcessTask(ctx, testTask(t, "m-failed", srv.URL)); err == nil {
		t.Fatal("500 answered: ProcessTask returned nil")
	}
	if _, ok, err := st.Delivered(ctx, "m-failed"); err != nil || ok {
		t.Errorf("marker after a 500: ok=%v err=%v", ok, err)
	}

	status = http.StatusOK
	if err := h.ProcessTask(ctx, testTask(t, "m-ok", srv.URL)); err != nil {
		t.Fatal(err)
	}
	at, ok, err := st.Delivered(ctx, "m-ok")
	attempts, _ := st.Attempts(ctx, "m-ok")
	if err != nil || !ok || len(attempts) != 1 || at.UnixMilli() != attempts[0].EndedAt.UnixMilli() {
		t.Errorf("marker after a 200: %s ok=%v err=%v, attempts %+v; want the attempt's end", at, ok, err, attempts)
	}
}
