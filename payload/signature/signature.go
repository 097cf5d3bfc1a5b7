// Package signature signs and verifies webhooks as the Standard Webhooks
// specification v1.0.0 says (https://www.standardwebhooks.com, "Verifying
// webhook authenticity"). A sender signs with a Signer; a receiver checks the
// three headers with Verify.
//
// What is signed is the string "{webhook-id}.{webhook-timestamp}.{body}": the
// message id, the attempt's Unix time in decimal seconds, and the exact body
// bytes sent. Two schemes exist, told apart by the version that starts each
// entry of the webhook-signature header:
//
//   - "v1": HMAC-SHA256 keyed with a shared Secret ("whsec_" + base64 of the
//     key bytes);
//   - "v1a": Ed25519 with a PrivateKey ("whsk_" + base64 of the 32-byte
//     RFC 8032 seed) that receivers check with its PublicKey ("whpk_" +
//     base64 of the 32-byte public key).
//
// The package is pure: no I/O beyond the readers it is handed, no clock (Sign
// and Verify take the time), no global state. Secret and PrivateKey never
// print their key material: every fmt verb, slog and the package's errors
// show a redacted form; only their Reveal method returns the text form.
package signature

import (
	"errors"
	"time"
)

// Header names, as the specification spells them ("Webhook headers").
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Signature versions: the part of a webhook-signature entry before the comma.
const (
	VersionHMAC    = "v1"  // HMAC-SHA256 with a Secret
	VersionEd25519 = "v1a" // Ed25519 with a PrivateKey, checked with its PublicKey
)

// Text-form prefixes of keys ("Secret serialization" in the specification).
const (
	PrefixSecret     = "whsec_"
	PrefixPrivateKey = "whsk_"
	PrefixPublicKey  = "whpk_"
)

// DefaultTolerance is how far webhook-timestamp may be from the receiver's
// clock, either way, when Verify is given no tolerance: five minutes, the
// value the official libraries use (WEBHOOK_TOLERANCE_IN_SECONDS).
const DefaultTolerance = 5 * time.Minute

// MaxEntries bounds the entries Verify reads from one webhook-signature
// header, so a forged header cannot make it run thousands of Ed25519 checks.
// A sender rotating keys sends one entry per key: two or three.
const MaxEntries = 16

// Errors about keys, and about Sign's arguments.
var (
	// ErrInvalidKey: text that is not a well-formed key of the wanted kind,
	// or a zero or nil key passed to Sign or Verify. The wrapping error says
	// why, never what the text was.
	ErrInvalidKey = errors.New("signature: invalid key")
	// ErrNoKeys: Sign was given no key and no secret, or Verify no key.
	ErrNoKeys = errors.New("signature: no keys")
	// ErrInvalidID: a message id that is empty, longer than MaxIDLength, or
	// holds a byte outside visible ASCII (so it is a valid header value).
	// Ids may hold '.', as the official libraries accept (the dispatcher's
	// generation ids may): the signed string "{id}.{ts}.{body}" then splits
	// more than one way only into a body that starts with decimal digits and
	// a '.', never a JSON object or array.
	ErrInvalidID = errors.New("signature: invalid message id")
	// ErrInvalidTimestamp: Sign was given a time before the Unix epoch.
	ErrInvalidTimestamp = errors.New("signature: timestamp before 1970")
)

// Errors from Verify. Each rejection of a webhook wraps exactly one of them.
var (
	// ErrMissingHeader: webhook-id, webhook-timestamp or webhook-signature
	// is absent or empty.
	ErrMissingHeader = errors.New("signature: missing header")
	// ErrMalformedHeader: a header is present but not of the specified form:
	// a timestamp that is not decimal digits, an invalid id, an entry that is
	// not "version,base64", a v1 or v1a signature that does not decode to 32
	// or 64 bytes, or more than MaxEntries entries.
	ErrMalformedHeader = errors.New("signature: malformed header")
	// ErrTimestampOutOfTolerance: webhook-timestamp is further from now than
	// the tolerance, in the past (a replay) or the future.
	ErrTimestampOutOfTolerance = errors.New("signature: timestamp out of tolerance")
	// ErrUnsupportedVersion: no entry has a version the given keys can check,
	// e.g. only v1 entries for a receiver holding only public keys.
	ErrUnsupportedVersion = errors.New("signature: no signature of a supported version")
	// ErrNoMatchingSignature: entries of a supported version exist, but none
	// verifies with any given key.
	ErrNoMatchingSignature = errors.New("signature: no matching signature")
)

// MaxIDLength is the longest message id Sign and Verify accept, in bytes.
const MaxIDLength = 256

// checkID reports whether id may be signed: 1 to MaxIDLength bytes of visible
// ASCII (0x21-0x7E, so it is a valid header value), '.' included.
func checkID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// signedContent returns "{id}.{ts}.{body}", the bytes both schemes sign.
func signedContent(id, ts string, body []byte) []byte {
	b := make([]byte, 0, len(id)+1+len(ts)+1+len(body))
	b = append(b, id...)
	b = append(b, '.')
	b = append(b, ts...)
	b = append(b, '.')
	return append(b, body...)
}
