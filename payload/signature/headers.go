package signature

import "net/http"

// Headers are the three header values that carry one webhook's signature.
type Headers struct {
	// ID is webhook-id: the message id, the same on every attempt, which
	// receivers use to drop duplicates.
	ID string
	// Timestamp is webhook-timestamp: the attempt's Unix time in decimal
	// seconds, e.g. "1674087231".
	Timestamp string
	// Signature is webhook-signature: space-separated "version,base64"
	// entries, e.g. "v1,K5oZ...= v1a,hnO3...==".
	Signature string
}

// FromHeader reads the three headers from h (names are case-insensitive; the
// first value of each counts). Missing ones are "".
func FromHeader(h http.Header) Headers {
	return Headers{
		ID:        h.Get(HeaderID),
		Timestamp: h.Get(HeaderTimestamp),
		Signature: h.Get(HeaderSignature),
	}
}

// Set sets the three headers on dst, replacing earlier values.
func (h Headers) Set(dst http.Header) {
	dst.Set(HeaderID, h.ID)
	dst.Set(HeaderTimestamp, h.Timestamp)
	dst.Set(HeaderSignature, h.Signature)
}
