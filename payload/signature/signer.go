package signature

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Signer signs webhooks with every v1a key it holds. The zero Signer holds
// none and signs only with the secrets passed to Sign.
type Signer struct {
	// Keys each add one "v1a" entry, in this order. During a key rotation
	// hold the new and the old key: receivers that trust either accept.
	Keys []PrivateKey
}

// Sign returns the headers for one attempt to deliver body: id as
// webhook-id, ts as Unix seconds (sub-second parts dropped), and one
// webhook-signature entry per secret ("v1", in argument order) and then per
// key of s ("v1a", in s.Keys order). Secrets are per call because the
// specification wants a separate one per endpoint; pass two while rotating.
// body is signed as given, byte for byte: send exactly these bytes.
//
// Errors: ErrNoKeys when there is nothing to sign with, ErrInvalidKey for a
// zero Secret or PrivateKey, ErrInvalidID for an id that is empty, longer
// than MaxIDLength bytes, or holds a byte outside visible ASCII ('.' is fine),
// ErrInvalidTimestamp for ts before 1970.
func (s Signer) Sign(id string, ts time.Time, body []byte, secrets ...Secret) (Headers, error) {
	if len(s.Keys)+len(secrets) == 0 {
		return Headers{}, ErrNoKeys
	}
	if !checkID(id) {
		return Headers{}, ErrInvalidID
	}
	if ts.Unix() < 0 {
		return Headers{}, ErrInvalidTimestamp
	}
	h := Headers{ID: id, Timestamp: strconv.FormatInt(ts.Unix(), 10)}
	content := signedContent(h.ID, h.Timestamp, body)
	entries := make([]string, 0, len(secrets)+len(s.Keys))
	for i, sec := range secrets {
		if sec.IsZero() {
			return Headers{}, fmt.Errorf("%w: secret %d is the zero Secret", ErrInvalidKey, i)
		}
		entries = append(entries, entry(VersionHMAC, sec.sign(content)))
	}
	for i, k := range s.Keys {
		if k.IsZero() {
			return Headers{}, fmt.Errorf("%w: key %d is the zero PrivateKey", ErrInvalidKey, i)
		}
		entries = append(entries, entry(VersionEd25519, k.sign(content)))
	}
	h.Signature = strings.Join(entries, " ")
	return h, nil
}

// entry formats one webhook-signature entry: "version,base64(sig)".
func entry(version string, sig []byte) string {
	return version + "," + base64.StdEncoding.EncodeToString(sig)
}
