package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Secret lengths in bytes, from the specification's table: "Between 24 bytes
// (192 bits) and 64 bytes (512 bits)".
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
	// secretBytes is what GenerateSecret makes: 256 bits, SHA-256's size.
	secretBytes = 32
)

// Secret is a symmetric "v1" signing key: HMAC-SHA256 over the signed
// content. Its text form is "whsec_" + standard base64 (padded) of the key
// bytes. The zero Secret holds no key: IsZero reports it and Sign refuses it.
//
// A Secret prints as "whsec_[redacted]" with every fmt verb and in slog. The
// key bytes are only reachable through a closure, which fmt prints as an
// address, so not even a struct holding a Secret in an unexported field (which
// fmt prints by reflection, bypassing Format) shows them. Reveal returns the
// text.
type Secret struct {
	key func() []byte
}

func newSecret(b []byte) Secret { return Secret{func() []byte { return b }} }

// ParseSecret parses the text form "whsec_<base64>". The prefix is required
// (unlike the official libraries, which also take bare base64) so that a
// whsk_ private key can never be taken for an HMAC secret; surrounding
// whitespace is not allowed. The decoded key must be MinSecretBytes to
// MaxSecretBytes long. Errors wrap ErrInvalidKey and never contain s.
func ParseSecret(s string) (Secret, error) {
	b, err := decodeKey(s, PrefixSecret)
	if err != nil {
		return Secret{}, err
	}
	if len(b) < MinSecretBytes || len(b) > MaxSecretBytes {
		return Secret{}, fmt.Errorf("%w: %s key is %d bytes, want %d to %d",
			ErrInvalidKey, PrefixSecret, len(b), MinSecretBytes, MaxSecretBytes)
	}
	return newSecret(b), nil
}

// GenerateSecret returns a new 32-byte Secret read from random, or from
// crypto/rand when random is nil. The error is random's.
func GenerateSecret(random io.Reader) (Secret, error) {
	if random == nil {
		random = rand.Reader
	}
	b := make([]byte, secretBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return Secret{}, fmt.Errorf("signature: generate secret: %w", err)
	}
	return newSecret(b), nil
}

// IsZero reports whether s holds no key (the zero Secret).
func (s Secret) IsZero() bool { return s.key == nil }

// Reveal returns the text form "whsec_<base64>" that ParseSecret reads, or ""
// for the zero Secret. It is the only method that shows the key: store or
// hand it to the endpoint's owner, never log it.
func (s Secret) Reveal() string {
	if s.key == nil {
		return ""
	}
	return PrefixSecret + base64.StdEncoding.EncodeToString(s.key())
}

// String returns "whsec_[redacted]", or "whsec_[none]" for the zero Secret.
func (s Secret) String() string {
	if s.key == nil {
		return PrefixSecret + "[none]"
	}
	return PrefixSecret + "[redacted]"
}

// GoString returns `signature.Secret("whsec_[redacted]")`, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("signature.Secret(%q)", s.String()) }

// Format prints the redacted form for every verb; see String.
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.String(), s.GoString()) }

// LogValue makes slog log the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// sign returns the v1 signature of content: the raw HMAC-SHA256.
func (s Secret) sign(content []byte) []byte {
	m := hmac.New(sha256.New, s.key())
	m.Write(content)
	return m.Sum(nil)
}

func (s Secret) version() string { return VersionHMAC }

// verify compares in constant time, as the specification requires for v1.
func (s Secret) verify(content, sig []byte) bool {
	return s.key != nil && hmac.Equal(sig, s.sign(content))
}

// decodeKey strips prefix from s and decodes the rest as padded standard
// base64. Its errors say what is wrong without quoting s.
func decodeKey(s, prefix string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return nil, fmt.Errorf("%w: want prefix %q", ErrInvalidKey, prefix)
	}
	// DecodeString would skip '\r' and '\n'; a key is one token.
	if strings.ContainsAny(rest, "\r\n") {
		return nil, fmt.Errorf("%w: %s key contains a line break", ErrInvalidKey, prefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %s key is not padded standard base64", ErrInvalidKey, prefix)
	}
	return b, nil
}
