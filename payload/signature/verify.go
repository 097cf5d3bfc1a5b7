package signature

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key is a key a receiver trusts: a Secret (checks "v1" entries) or a
// PublicKey (checks "v1a" entries). Only this package implements it.
type Key interface {
	version() string
	verify(content, sig []byte) bool
}

var (
	_ Key = Secret{}
	_ Key = PublicKey{}
)

// sigSize is the decoded size of a signature of each known version.
var sigSize = map[string]int{
	VersionHMAC:    sha256.Size,           // 32
	VersionEd25519: ed25519.SignatureSize, // 64
}

// Verify checks one received webhook: h as read with FromHeader, body as the
// exact bytes received (before any JSON parsing), now as the receiver's
// clock, tolerance as the largest allowed distance between now and
// h.Timestamp either way (DefaultTolerance when zero or negative), and keys
// as the trust list. It returns nil if any webhook-signature entry verifies
// with any key of its version; entries of unknown versions are skipped, as
// the specification's libraries do. v1 entries are compared in constant time.
//
// Errors wrap, in the order checked: ErrNoKeys (no keys), ErrInvalidKey (a
// nil or zero key), ErrMissingHeader, ErrMalformedHeader, ErrTimestampOutOfTolerance,
// ErrUnsupportedVersion, ErrNoMatchingSignature. They name the header at
// fault but quote no header value and no key.
//
// Verify does not remember ids: drop repeats of h.ID yourself (the
// specification's example keeps them in Redis for 5 minutes).
func Verify(h Headers, body []byte, now time.Time, tolerance time.Duration, keys ...Key) error {
	if len(keys) == 0 {
		return ErrNoKeys
	}
	versions := map[string]bool{}
	for i, k := range keys {
		if k == nil || isZero(k) {
			return fmt.Errorf("%w: trusted key %d is nil or zero", ErrInvalidKey, i)
		}
		versions[k.version()] = true
	}

	switch {
	case h.ID == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderID)
	case h.Timestamp == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderTimestamp)
	case h.Signature == "":
		return fmt.Errorf("%w: %s", ErrMissingHeader, HeaderSignature)
	}
	if !checkID(h.ID) {
		return fmt.Errorf("%w: %s: want 1 to %d visible ASCII characters",
			ErrMalformedHeader, HeaderID, MaxIDLength)
	}
	ts, err := parseTimestamp(h.Timestamp)
	if err != nil {
		return err
	}
	entries, err := parseEntries(h.Signature)
	if err != nil {
		return err
	}

	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Compare times, not durations: a far-off timestamp would overflow one.
	switch t := time.Unix(ts, 0); {
	case t.Before(now.Add(-tolerance)):
		return fmt.Errorf("%w: %s is %s old, tolerance %s",
			ErrTimestampOutOfTolerance, HeaderTimestamp, now.Sub(t).Truncate(time.Second), tolerance)
	case t.After(now.Add(tolerance)):
		return fmt.Errorf("%w: %s is %s in the future, tolerance %s",
			ErrTimestampOutOfTolerance, HeaderTimestamp, t.Sub(now).Truncate(time.Second), tolerance)
	}

	// The official libraries sign the timestamp as they re-format it after
	// parsing, so a zero-padded header is checked without the padding.
	content := signedContent(h.ID, strconv.FormatInt(ts, 10), body)
	checked := false
	for _, e := range entries {
		if !versions[e.version] {
			continue
		}
		checked = true
		for _, k := range keys {
			if k.version() == e.version && k.verify(content, e.sig) {
				return nil
			}
		}
	}
	if !checked {
		return fmt.Errorf("%w: %s has no %s entry", ErrUnsupportedVersion, HeaderSignature, versionList(versions))
	}
	return ErrNoMatchingSignature
}

func isZero(k Key) bool {
	switch k := k.(type) {
	case Secret:
		return k.IsZero()
	case *Secret:
		return k == nil || k.IsZero()
	case PublicKey:
		return k.IsZero()
	case *PublicKey:
		return k == nil || k.IsZero()
	}
	return false
}

func versionList(versions map[string]bool) string {
	switch {
	case versions[VersionHMAC] && versions[VersionEd25519]:
		return VersionHMAC + " or " + VersionEd25519
	case versions[VersionHMAC]:
		return VersionHMAC
	default:
		return VersionEd25519
	}
}

// parseTimestamp reads webhook-timestamp: decimal digits only (no sign, no
// spaces), fitting an int64.
func parseTimestamp(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %s: want decimal Unix seconds", ErrMalformedHeader, HeaderTimestamp)
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: out of range", ErrMalformedHeader, HeaderTimestamp)
	}
	return ts, nil
}

type sigEntry struct {
	version string
	sig     []byte
}

// parseEntries splits webhook-signature on single spaces into at most
// MaxEntries "version,base64" entries. Known versions must decode to their
// signature size; unknown versions are kept undecoded, to be skipped.
func parseEntries(s string) ([]sigEntry, error) {
	parts := strings.Split(s, " ")
	if len(parts) > MaxEntries {
		return nil, fmt.Errorf("%w: %s has %d entries, at most %d",
			ErrMalformedHeader, HeaderSignature, len(parts), MaxEntries)
	}
	entries := make([]sigEntry, 0, len(parts))
	for i, p := range parts {
		version, b64, ok := strings.Cut(p, ",")
		if !ok || version == "" || b64 == "" {
			return nil, fmt.Errorf("%w: %s entry %d: want version,base64",
				ErrMalformedHeader, HeaderSignature, i+1)
		}
		size, known := sigSize[version]
		if !known {
			entries = append(entries, sigEntry{version: version})
			continue
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(sig) != size || strings.ContainsAny(b64, "\r\n") {
			return nil, fmt.Errorf("%w: %s entry %d: a %s signature is %d bytes in padded standard base64",
				ErrMalformedHeader, HeaderSignature, i+1, version, size)
		}
		entries = append(entries, sigEntry{version: version, sig: sig})
	}
	return entries, nil
}
