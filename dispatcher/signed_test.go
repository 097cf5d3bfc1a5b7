package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TestSignedTaskCarriesFlagNotSecret: the task payload (what asynqmon and the
// asynq CLI show) and the failed record say only that a delivery is signed;
// the secret reaches neither, nor fmt or slog output of a Delivery.
func TestSignedTaskCarriesFlagNotSecret(t *testing.T) {
	sec, err := signature.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	secretText := strings.TrimPrefix(sec.Reveal(), signature.PrefixSecret)
	d := Delivery{ID: "gen.1", Webhook: "https://a.example/h", EnqueuedAt: time.Unix(1, 0), Body: []byte(`{"id":"gen.1"}`), Secret: sec}

	raw, err := EncodeTask(d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(raw, []byte(`,"signed":true}`)) {
		t.Errorf("payload %s does not say signed", raw)
	}
	back, err := DecodeTask(raw)
	if err != nil || !back.Signed || !back.Secret.IsZero() {
		t.Errorf("DecodeTask = %+v, %v; want Signed and no secret", back, err)
	}
	rec, err := json.Marshal(FailedRecord{Delivery: d, FailedAt: time.Unix(2, 0), LastError: "500"})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "delivery", d)
	for name, out := range map[string][]byte{
		"task payload": raw, "failed record": rec, "slog": logged.Bytes(),
		"%v": fmt.Appendf(nil, "%v", d), "%+v": fmt.Appendf(nil, "%+v", d), "%#v": fmt.Appendf(nil, "%#v", d),
	} {
		if bytes.Contains(out, []byte(secretText)) {
			t.Errorf("%s carries the secret: %s", name, out)
		}
	}

	// Unsigned deliveries keep exactly the payload they had before signing existed.
	plain, err := EncodeTask(Delivery{ID: "x", Webhook: "https://a.example/h", EnqueuedAt: time.Unix(1, 0), Body: []byte(`{}`)})
	if want := `{"id":"x","webhook":"https://a.example/h","enqueuedAt":"1970-01-01T00:00:01Z","body":{}}`; err != nil || string(plain) != want {
		t.Errorf("unsigned payload = %s, %v; want %s", plain, err, want)
	}
}
