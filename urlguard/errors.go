package urlguard

import (
	"errors"
	"fmt"
)

// ErrForbidden is wrapped by every refusal from this package.
var ErrForbidden = errors.New("urlguard: destination not allowed")

// The reasons for a refusal. Each wraps ErrForbidden, so errors.Is(err,
// ErrForbidden) holds whichever of them err carries; every refusal carries
// exactly one.
var (
	// ErrTooLong: the URL is longer than MaxURLLen bytes.
	ErrTooLong = reason("URL is too long")
	// ErrCharacters: the URL holds a control character, space, backslash,
	// non-ASCII byte or broken percent-escape, or does not parse at all.
	ErrCharacters = reason("URL has forbidden characters")
	// ErrScheme: the scheme is missing or is not https.
	ErrScheme = reason("scheme is not https")
	// ErrHost: no authority (//host), an empty host, or a host that is not
	// a valid DNS name or IP literal.
	ErrHost = reason("host is missing or malformed")
	// ErrUserinfo: the authority has an @ (user, password, or even nothing
	// before it).
	ErrUserinfo = reason("URL has userinfo")
	// ErrPort: the port is empty, not decimal digits, has a leading zero, is
	// outside 1-65535, or is not among a Guard's allowed ports.
	ErrPort = reason("port is not allowed")
	// ErrInternalName: localhost, a single-label name, a name under a
	// suffix that is private by standard or convention (.local, .internal...),
	// or a name under no ICANN public suffix (redis.default,
	// svc.cluster.local), which only a private resolver can answer.
	ErrInternalName = reason("host is an internal name")
	// ErrPublicSuffix: a name that is itself an ICANN public suffix (co.uk,
	// a city of a wildcard suffix such as x.kawasaki.jp), which has no
	// registrable part and so no owner to receive webhooks.
	ErrPublicSuffix = reason("host is a public suffix")
	// ErrMetadata: a cloud instance-metadata host name.
	ErrMetadata = reason("host is a cloud metadata name")
	// ErrAddress: an IP (a literal host, or the address being dialled) that
	// is not public unicast, or a dial address that cannot be judged.
	ErrAddress = reason("address is not public")
	// ErrAmbiguousIP: a host some parser could read as an IP address in a
	// non-canonical form (numeric or 0x last label, percent-encoding,
	// non-ASCII characters, an IPv6 zone).
	ErrAmbiguousIP = reason("host is ambiguous")
)

func reason(s string) error { return fmt.Errorf("%w: %s", ErrForbidden, s) }

// refusal is the error returned for every refusal: its text is specific to
// the case, and it unwraps to one reason sentinel (which unwraps to
// ErrForbidden).
type refusal struct {
	reason error
	detail string
}

func (e *refusal) Error() string { return ErrForbidden.Error() + ": " + e.detail }
func (e *refusal) Unwrap() error { return e.reason }

func refuse(reason error, format string, args ...any) error {
	return &refusal{reason: reason, detail: fmt.Sprintf(format, args...)}
}
