package signature_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TestRedaction proves that no fmt verb, no container, slog and encoding/json
// ever show the key material of a Secret or a PrivateKey.
func TestRedaction(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(0xa0 + i)
	}
	sec, err := signature.ParseSecret("whsec_" + base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	priv, _, err := signature.GenerateKey(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	expanded := ed25519.NewKeyFromSeed(raw) // seed || public key, as crypto/ed25519 holds it

	// Every way the bytes could show up.
	var forbidden []string
	for _, b := range [][]byte{raw, expanded} {
		forbidden = append(forbidden,
			base64.StdEncoding.EncodeToString(b)[:20],
			base64.RawURLEncoding.EncodeToString(b)[:20],
			hex.EncodeToString(b)[:16],
			strings.ToUpper(hex.EncodeToString(b)[:16]),
			fmt.Sprint(b[:4])[1:12], // "160 161 162"
			fmt.Sprintf("%#v", b[:4]),
			string(b[:8]),
			strings.Trim(fmt.Sprintf("%q", b[:4]), `"`),
		)
	}
	type exported struct {
		Secret signature.Secret
		Key    signature.PrivateKey
	}
	type unexported struct {
		secret signature.Secret
		key    signature.PrivateKey
	}
	values := map[string]any{
		"Secret":            sec,
		"*Secret":           &sec,
		"PrivateKey":        priv,
		"*PrivateKey":       &priv,
		"exported fields":   exported{sec, priv},
		"unexported fields": unexported{sec, priv},
		"*unexported":       &unexported{sec, priv},
		"slices":            []any{[]signature.Secret{sec}, []signature.PrivateKey{priv}},
		"map":               map[string]signature.Secret{"endpoint": sec},
		"Signer":            signature.Signer{Keys: []signature.PrivateKey{priv, priv}},
		"*Signer":           &signature.Signer{Keys: []signature.PrivateKey{priv}},
	}
	for name, v := range values {
		out := fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%X|%d|%10.3v|%-40s|%T", v, v, v, v, v, v, v, v, v, v, v)
		var logs bytes.Buffer
		slog.New(slog.NewTextHandler(&logs, nil)).Info("text", "v", v)
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("json", "v", v)
		js, _ := json.Marshal(v)
		for _, where := range []string{out, logs.String(), string(js)} {
			for _, f := range forbidden {
				if strings.Contains(where, f) {
					t.Errorf("%s: output contains key material %q:\n%s", name, f, where)
				}
			}
		}
	}

	// What is shown instead.
	tests := []struct{ got, want string }{
		{fmt.Sprintf("%v %+v %#v %s", sec, sec, sec, sec),
			`whsec_[redacted] whsec_[redacted] signature.Secret("whsec_[redacted]") whsec_[redacted]`},
		{fmt.Sprintf("%v", priv), "whsk_[redacted id=" + priv.ID() + "]"},
		{fmt.Sprintf("%#v", priv), `signature.PrivateKey("whsk_[redacted id=` + priv.ID() + `]")`},
		{fmt.Sprintf("%q", sec), `"whsec_[redacted]"`},
		{fmt.Sprintf("%v %v", signature.Secret{}, signature.PrivateKey{}), "whsec_[none] whsk_[none]"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	// Only Reveal shows the text form.
	if !strings.HasPrefix(sec.Reveal(), "whsec_"+base64.StdEncoding.EncodeToString(raw)[:20]) {
		t.Errorf("Reveal() = %q, want the whsec_ text form", sec.Reveal())
	}
}
