package signature_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// b64 returns the padded standard base64 of n bytes of value c.
func b64(n int, c byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{c}, n)) }

func TestParse(t *testing.T) {
	parsers := map[string]func(string) error{
		"ParseSecret":     func(s string) error { _, err := signature.ParseSecret(s); return err },
		"ParsePrivateKey": func(s string) error { _, err := signature.ParsePrivateKey(s); return err },
		"ParsePublicKey":  func(s string) error { _, err := signature.ParsePublicKey(s); return err },
	}
	tests := []struct {
		parser string
		in     string
		ok     bool
	}{
		{"ParseSecret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true}, // 24 bytes, the libraries' test secret
		{"ParseSecret", "whsec_" + b64(24, 1), true},                    // spec minimum
		{"ParseSecret", "whsec_" + b64(64, 1), true},                    // spec maximum
		{"ParseSecret", "whsec_" + b64(23, 1), false},
		{"ParseSecret", "whsec_" + b64(65, 1), false},
		{"ParseSecret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},                     // prefix required
		{"ParseSecret", "whsk_" + b64(32, 1), false},                                   // a private key is no secret
		{"ParseSecret", "whsec_" + strings.TrimRight(b64(25, 1), "="), false},          // unpadded
		{"ParseSecret", "whsec_" + strings.ReplaceAll(b64(30, 0xfb), "+", "-"), false}, // URL alphabet
		{"ParseSecret", " whsec_" + b64(32, 1), false},
		{"ParseSecret", "whsec_" + b64(32, 1)[:20] + "\n" + b64(32, 1)[20:], false},
		{"ParseSecret", "", false},
		{"ParsePrivateKey", "whsk_" + b64(32, 1), true},
		{"ParsePrivateKey", "whsk_" + b64(64, 1), false}, // the 64-byte seed||public form is not whsk_
		{"ParsePrivateKey", "whsk_" + b64(31, 1), false},
		{"ParsePrivateKey", "whpk_" + b64(32, 1), false},
		{"ParsePrivateKey", "whsec_" + b64(32, 1), false},
		{"ParsePublicKey", "whpk_" + b64(32, 1), true},
		{"ParsePublicKey", "whpk_" + b64(33, 1), false},
		{"ParsePublicKey", "whsk_" + b64(32, 1), false},
		{"ParsePublicKey", "whpk_!!!!", false},
	}
	for _, tt := range tests {
		err := parsers[tt.parser](tt.in)
		if tt.ok && err != nil {
			t.Errorf("%s(%q) = %v, want nil", tt.parser, tt.in, err)
		}
		if !tt.ok && !errors.Is(err, signature.ErrInvalidKey) {
			t.Errorf("%s(%q) = %v, want ErrInvalidKey", tt.parser, tt.in, err)
		}
		if err != nil && tt.in != "" && strings.Contains(err.Error(), tt.in) {
			t.Errorf("%s error %q quotes its input", tt.parser, err)
		}
	}
}

func TestTextFormsRoundTrip(t *testing.T) {
	sec, err := signature.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := signature.ParseSecret(sec.Reveal()); err != nil || back.Reveal() != sec.Reveal() {
		t.Errorf("ParseSecret(Reveal()) = %v, %v", back.Reveal() == sec.Reveal(), err)
	}
	priv, pub, err := signature.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if priv.Public() != pub {
		t.Error("GenerateKey: public key does not match private key")
	}
	if back, err := signature.ParsePrivateKey(priv.Reveal()); err != nil || back.Public() != pub {
		t.Errorf("ParsePrivateKey(Reveal()) = %v, %v", back.Public(), err)
	}
	if back, err := signature.ParsePublicKey(pub.String()); err != nil || back != pub {
		t.Errorf("ParsePublicKey(String()) = %v, %v", back, err)
	}
	if len(pub.ID()) != signature.IDLength {
		t.Errorf("ID() = %q, want %d characters", pub.ID(), signature.IDLength)
	}
}

// GenerateKey reads its seed from the reader it is given, so tests and key
// ceremonies can be reproducible; a short reader is an error.
func TestGenerateFromReader(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	priv, pub, err := signature.GenerateKey(bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	if want := "whsk_" + base64.StdEncoding.EncodeToString(seed); priv.Reveal() != want {
		t.Errorf("GenerateKey(seed).Reveal() = %s, want %s", priv.Reveal(), want)
	}
	if want := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey); pub.String() != "whpk_"+base64.StdEncoding.EncodeToString(want) {
		t.Errorf("GenerateKey(seed) public = %s", pub)
	}
	if _, _, err := signature.GenerateKey(bytes.NewReader(seed[:10])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("GenerateKey(short) = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := signature.GenerateSecret(iotest.ErrReader(io.ErrClosedPipe)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("GenerateSecret(failing) = %v, want the reader's error", err)
	}
}

func TestParseKeyFile(t *testing.T) {
	k1, k2 := "whsk_"+b64(32, 1), "whsk_"+b64(32, 2)
	tests := []struct {
		name string
		file string
		want []string // Reveal() of each key, in order
		err  string   // substring of the error, "" for none
	}{
		{"empty", "", nil, ""},
		{"comments only", "# keys\n\n   # more\n", nil, ""},
		{"two keys", "# current\n" + k2 + "\n\n# previous, until 2026-01-01\n" + k1 + "\n", []string{k2, k1}, ""},
		{"CRLF and indentation", "  " + k1 + "  \r\n\t" + k2 + "\r\n", []string{k1, k2}, ""},
		{"no final newline", k1, []string{k1}, ""},
		{"bad line", k1 + "\nwhsk_short\n", nil, "line 2"},
		{"trailing comment", k1 + " # current\n", nil, "line 1"},
		{"public key", "whpk_" + b64(32, 1) + "\n", nil, "line 1"},
		{"duplicate", k1 + "\n" + k2 + "\n" + k1 + "\n", nil, "line 3"},
	}
	for _, tt := range tests {
		keys, err := signature.ParseKeyFile(strings.NewReader(tt.file))
		if tt.err != "" {
			if !errors.Is(err, signature.ErrInvalidKey) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want ErrInvalidKey mentioning %q", tt.name, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), b64(32, 1)) {
				t.Errorf("%s: error %q quotes a key", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: err = %v", tt.name, err)
			continue
		}
		var got []string
		for _, k := range keys {
			got = append(got, k.Reveal())
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s: keys = %v, want %v", tt.name, got, tt.want)
		}
	}
	if _, err := signature.ParseKeyFile(iotest.ErrReader(io.ErrClosedPipe)); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("ParseKeyFile(failing reader) = %v, want the read error", err)
	}
}
