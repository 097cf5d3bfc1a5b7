// Package payload fixes what a webhook looks like on the wire: the JSON body
// documented by the provider and the headers sent with it. It validates a
// completed generation, normalises it, and encodes the body bytes once; the
// worker sends those bytes untouched on every attempt.
//
// The package is pure: no I/O, no clock.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// The documented headers.
const (
	HeaderSource   = "X-Webhook-Source"
	HeaderMediaID  = "X-Media-Id"
	SourceValue    = "artificial-studio"
	ContentType    = "application/json"
	StatusSuccess  = "success"
	MaxIDLength    = 128
	maxFieldLength = 2048
)

// Types lists the media types a generation can have, in the documented order.
var Types = []string{"image", "video", "audio", "text", "object"}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("payload: invalid generation")

// Generation is a completed generation as the pipeline hands it over, and the
// webhook body after Normalize. Field order is the documented body order.
type Generation struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Tool   string `json:"tool"`
	Type   string `json:"type"`
	Output string `json:"output"`
	// Thumbnail is nil for JSON null (always so for audio).
	Thumbnail *string `json:"thumbnail"`
	CreatedAt string  `json:"createdAt"`
}

// FieldError names one field and what is wrong with it.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every field that failed validation, in body order.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid generation: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for a *ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Normalize validates g and returns the form that is sent: status defaults to
// "success" when empty, createdAt is rewritten to UTC with milliseconds
// ("2024-01-15T10:30:00.000Z"). The error, if any, is a *ValidationError
// naming every offending field.
func Normalize(g Generation) (Generation, error) {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}

	if reason := checkID(g.ID); reason != "" {
		bad("id", "%s", reason)
	}
	switch g.Status {
	case "":
		g.Status = StatusSuccess // webhooks are only sent on success
	case StatusSuccess:
	default:
		bad("status", "must be %q (webhooks are only sent for successful generations), got %q", StatusSuccess, clip(g.Status))
	}
	if reason := checkText(g.Tool); reason != "" {
		bad("tool", "%s", reason)
	}
	if g.Type == "" {
		bad("type", "is required")
	} else if !isType(g.Type) {
		bad("type", "must be one of %s, got %q", strings.Join(Types, ", "), clip(g.Type))
	}
	if reason := checkMediaURL(g.Output); reason != "" {
		bad("output", "%s", reason)
	}
	if g.Thumbnail != nil {
		if g.Type == "audio" {
			bad("thumbnail", "must be null for audio")
		} else if reason := checkMediaURL(*g.Thumbnail); reason != "" {
			bad("thumbnail", "%s", reason)
		}
	}
	if g.CreatedAt == "" {
		bad("createdAt", "is required")
	} else if t, err := parseTime(g.CreatedAt); err != nil {
		bad("createdAt", "must be an ISO 8601 timestamp with a time zone such as 2024-01-15T10:30:00.000Z, got %q", clip(g.CreatedAt))
	} else {
		g.CreatedAt = FormatTime(t)
	}

	if len(errs) > 0 {
		return Generation{}, &ValidationError{Fields: errs}
	}
	return g, nil
}

// Encode returns the exact webhook body for a normalized generation: compact
// JSON, fields in the documented order, no HTML escaping (an "&" in a media URL
// stays "&"). Call it once, at enqueue time.
func Encode(g Generation) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(g); err != nil {
		return nil, fmt.Errorf("encode generation %s: %w", g.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// SetHeaders sets the documented webhook headers on h. id must have passed
// Normalize, which guarantees it is a safe header value.
func SetHeaders(h http.Header, id, userAgent string) {
	h["Content-Type"] = []string{ContentType}
	h[HeaderSource] = []string{SourceValue}
	h["X-Media-Id"] = []string{id}
	h["User-Agent"] = []string{userAgent}
}

// UserAgent names the dispatcher and its version, e.g.
// "artificial-studio-webhooks/1.2.0".
func UserAgent(version string) string {
	if version == "" {
		version = "dev"
	}
	return "artificial-studio-webhooks/" + version
}

// FormatTime renders t as createdAt is sent: UTC, milliseconds, "Z".
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// parseTime accepts RFC 3339 timestamps (any fraction, "Z" or an offset).
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	// Checked in UTC, the form that is sent: 9999-12-31T23:30:00-01:00 is
	// year 10000 there, which RFC 3339 cannot write.
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return time.Time{}, errors.New("year out of range")
	}
	return t, nil
}

// checkID keeps the id safe as a header value, a Redis key and a URL path
// segment: 1–128 bytes of letters, digits and ". _ : ~ -", and not "." or
// "..". Those are dot segments (RFC 3986 section 5.2.4): HTTP clients and
// net/http's ServeMux remove them (/v1/deliveries/.. becomes /v1), so
// GET /v1/deliveries/{id} could never read such a delivery back.
func checkID(id string) string {
	if id == "" {
		return "is required"
	}
	if id == "." || id == ".." {
		return fmt.Sprintf("must not be %q, a dot segment that URL paths resolve away (GET /v1/deliveries/{id} could not read it back)", id)
	}
	if len(id) > MaxIDLength {
		return fmt.Sprintf("must be at most %d bytes, got %d", MaxIDLength, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '~' || c == '-':
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("must not contain control characters (byte 0x%02x at %d)", c, i)
		case c == ' ':
			return fmt.Sprintf("must not contain whitespace (at %d)", i)
		default:
			return fmt.Sprintf("may contain only letters, digits and . _ : ~ - (found %q at %d)", rune(c), i)
		}
	}
	return ""
}

func checkText(s string) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > maxFieldLength:
		return fmt.Sprintf("must be at most %d bytes", maxFieldLength)
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.ContainsRune(s, utf8.RuneError):
		// encoding/json turns a lone surrogate escape (\ud800) into U+FFFD;
		// refuse it like the invalid UTF-8 it stands for.
		return "must not contain U+FFFD (a lone surrogate or invalid UTF-8)"
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "must not contain control characters"
	}
	return ""
}

// checkMediaURL requires an absolute http(s) URL with a host. These URLs are
// data for the customer, never fetched by the dispatcher, so http is allowed.
func checkMediaURL(s string) string {
	if reason := checkText(s); reason != "" {
		return reason
	}
	u, err := url.Parse(s)
	if err != nil {
		return "must be an absolute http(s) URL"
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return fmt.Sprintf("must be an absolute http(s) URL, got %q", clip(s))
	}
	if strings.ContainsAny(s, " \\") {
		return "must not contain spaces or backslashes"
	}
	return ""
}

func isType(t string) bool {
	for _, v := range Types {
		if v == t {
			return true
		}
	}
	return false
}

// clip keeps error messages short when a caller sends something huge.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
