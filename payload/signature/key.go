package signature

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// PrivateKey is an asymmetric "v1a" signing key: Ed25519 (RFC 8032). Its text
// form is "whsk_" + standard base64 (padded) of the 32-byte seed, the RFC 8032
// "private key" from which the key pair is derived. That is what the official
// Go library reads (libraries/go/webhook_asymmetric.go passes the decoded
// whsk_ bytes to ed25519.NewKeyFromSeed, and its TestAsymmetricWebhookSign
// vector, kept in this package's tests, signs with such a seed); the
// specification itself says only "standard ed25519 key pair", base64 encoded.
//
// A PrivateKey prints as "whsk_[redacted id=<ID>]" with every fmt verb and in
// slog; like Secret it holds the key bytes only in a closure. Reveal returns
// the text. The zero PrivateKey holds no key.
type PrivateKey struct {
	priv func() ed25519.PrivateKey
	pub  PublicKey
}

// PublicKey is the public half of a PrivateKey, what a receiver trusts for
// "v1a". Its text form is "whpk_" + standard base64 (padded) of the 32-byte
// RFC 8032 public key, the same bytes as the JWK "x" member (RFC 8037) in
// standard rather than URL-safe base64. A PublicKey is not secret: String
// returns the text form. The zero PublicKey holds no key.
type PublicKey struct {
	b string // the 32 key bytes; a string so PublicKey is comparable with ==
}

// ParsePrivateKey parses the text form "whsk_<base64 of a 32-byte seed>".
// The prefix is required and the seed must be exactly ed25519.SeedSize bytes.
// Errors wrap ErrInvalidKey and never contain s.
func ParsePrivateKey(s string) (PrivateKey, error) {
	b, err := decodeKey(s, PrefixPrivateKey)
	if err != nil {
		return PrivateKey{}, err
	}
	if len(b) != ed25519.SeedSize {
		return PrivateKey{}, fmt.Errorf("%w: %s key is %d bytes, want a %d-byte Ed25519 seed",
			ErrInvalidKey, PrefixPrivateKey, len(b), ed25519.SeedSize)
	}
	return newPrivateKey(b), nil
}

// ParsePublicKey parses the text form "whpk_<base64 of a 32-byte key>". The
// prefix is required and the key must be exactly ed25519.PublicKeySize bytes.
// Errors wrap ErrInvalidKey.
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := decodeKey(s, PrefixPublicKey)
	if err != nil {
		return PublicKey{}, err
	}
	if len(b) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("%w: %s key is %d bytes, want %d",
			ErrInvalidKey, PrefixPublicKey, len(b), ed25519.PublicKeySize)
	}
	return PublicKey{string(b)}, nil
}

// GenerateKey returns a new key pair whose seed is the next 32 bytes of
// random, or of crypto/rand when random is nil. The error is random's.
func GenerateKey(random io.Reader) (PrivateKey, PublicKey, error) {
	if random == nil {
		random = rand.Reader
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(random, seed); err != nil {
		return PrivateKey{}, PublicKey{}, fmt.Errorf("signature: generate key: %w", err)
	}
	k := newPrivateKey(seed)
	return k, k.Public(), nil
}

func newPrivateKey(seed []byte) PrivateKey {
	priv := ed25519.NewKeyFromSeed(seed)
	return PrivateKey{
		priv: func() ed25519.PrivateKey { return priv },
		pub:  PublicKey{string(priv.Public().(ed25519.PublicKey))},
	}
}

// ParseKeyFile reads private keys, one "whsk_..." per line, in file order.
// Surrounding whitespace is trimmed; blank lines and lines whose first
// non-blank character is '#' are skipped (no trailing comments). A line that
// is not a key, or repeats an earlier key, fails the whole file with an error
// naming the line and wrapping ErrInvalidKey. A file with no keys returns an
// empty slice and no error; a read error is returned as is, wrapped.
func ParseKeyFile(r io.Reader) ([]PrivateKey, error) {
	var keys []PrivateKey
	seen := map[PublicKey]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParsePrivateKey(line)
		if err != nil {
			return nil, fmt.Errorf("key file line %d: %w", n, err)
		}
		if first, dup := seen[k.Public()]; dup {
			return nil, fmt.Errorf("key file line %d: %w: same key as line %d", n, ErrInvalidKey, first)
		}
		seen[k.Public()] = n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	return keys, nil
}

// IsZero reports whether k holds no key (the zero PrivateKey).
func (k PrivateKey) IsZero() bool { return k.priv == nil }

// Public returns the public key receivers verify k's signatures with; the
// zero PublicKey for the zero PrivateKey.
func (k PrivateKey) Public() PublicKey {
	return k.pub
}

// ID returns the ID of k's public key; see PublicKey.ID.
func (k PrivateKey) ID() string { return k.Public().ID() }

// Reveal returns the text form "whsk_<base64 seed>" that ParsePrivateKey
// reads, or "" for the zero PrivateKey. It is the only method that shows the
// key: write it to the key file, never to a log.
func (k PrivateKey) Reveal() string {
	if k.priv == nil {
		return ""
	}
	return PrefixPrivateKey + base64.StdEncoding.EncodeToString(k.priv().Seed())
}

// String returns "whsk_[redacted id=<ID>]", or "whsk_[none]" for the zero
// PrivateKey.
func (k PrivateKey) String() string {
	if k.priv == nil {
		return PrefixPrivateKey + "[none]"
	}
	return PrefixPrivateKey + "[redacted id=" + k.ID() + "]"
}

// GoString returns `signature.PrivateKey("whsk_[redacted id=<ID>]")`, for %#v.
func (k PrivateKey) GoString() string {
	return fmt.Sprintf("signature.PrivateKey(%q)", k.String())
}

// Format prints the redacted form for every verb; see String.
func (k PrivateKey) Format(f fmt.State, verb rune) {
	formatRedacted(f, verb, k.String(), k.GoString())
}

// LogValue makes slog log the redacted form.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// GoString returns `signature.PublicKey("whpk_...")`, for %#v.
func (k PublicKey) GoString() string { return fmt.Sprintf("signature.PublicKey(%q)", k.String()) }

// IsZero reports whether k holds no key (the zero PublicKey).
func (k PublicKey) IsZero() bool { return k.b == "" }

// String returns the text form "whpk_<base64>" that ParsePublicKey reads, or
// "" for the zero PublicKey.
func (k PublicKey) String() string {
	if k.b == "" {
		return ""
	}
	return PrefixPublicKey + base64.StdEncoding.EncodeToString([]byte(k.b))
}

// IDLength is the length of the key IDs that ID returns.
const IDLength = 16

// ID returns a short name for k, for key listings and logs: the first
// IDLength characters of its JWK thumbprint (RFC 7638, over the RFC 8037
// members {"crv":"Ed25519","kty":"OKP","x":...}; base64url SHA-256), 96 bits.
// Tools that compute JWK thumbprints print the full 43-character value, which
// starts with this ID. "" for the zero PublicKey. The specification defines
// no key ids; this is this package's choice.
func (k PublicKey) ID() string {
	if k.b == "" {
		return ""
	}
	x := base64.RawURLEncoding.EncodeToString([]byte(k.b))
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:IDLength]
}

func (k PublicKey) version() string { return VersionEd25519 }

func (k PublicKey) verify(content, sig []byte) bool {
	return k.b != "" && ed25519.Verify(ed25519.PublicKey(k.b), content, sig)
}

func (k PrivateKey) sign(content []byte) []byte { return ed25519.Sign(k.priv(), content) }
