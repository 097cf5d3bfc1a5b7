// Package strictjson decodes API request bodies with encoding/json after
// refusing what encoding/json would quietly accept: invalid UTF-8, object
// keys that match a field only case-insensitively (encoding/json folds "Id",
// "ID" and "\u212a" Kelvin-sign spellings onto a field), unknown fields,
// repeated keys (the last would win), nesting deeper than MaxDepth, and
// anything after the value.
//
// The check is one pass over the body, with a constant amount of work per
// byte: keys are looked up in a per-type table built once by reflection and
// remembered in per-object sets, and the scratch space is reused across
// objects and calls. Decoding afterwards is encoding/json's, which is linear
// too, so a body's cost grows with its size and not with its shape.
//
// The package is pure: values in, values out, no I/O.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDepth is how deeply objects and arrays may nest, the outermost being
// depth 1; API requests need four levels.
const MaxDepth = 16

// maxRawDepth bounds nesting inside a json.RawMessage, which MaxDepth does not
// cover; it is encoding/json's own limit, which would refuse the body anyway.
const maxRawDepth = 10000

// ErrMalformed is wrapped by every error Decode returns for a bad body,
// but for a list over its limit (ErrTooManyItems).
var ErrMalformed = errors.New("strictjson: malformed JSON")

// ErrTooManyItems is wrapped by the *TooManyItemsError that Decode returns
// for a well-formed body with a list longer than its field allows.
var ErrTooManyItems = errors.New("strictjson: too many items")

// TooManyItemsError is a list longer than the `strictjson:"maxItems=N"` tag
// of its struct field allows. Decode returns it only for a body that passes
// every other check (so a malformed body is ErrMalformed, whatever its
// length), before encoding/json decodes anything. It wraps ErrTooManyItems,
// not ErrMalformed.
type TooManyItemsError struct {
	Field string // path of keys to the list, as in other messages: "deliveries"
	Limit int    // the tag's N
	Items int    // how many elements the list holds, more than Limit
}

func (e *TooManyItemsError) Error() string {
	return fmt.Sprintf("strictjson: %s holds %d items, at most %d", plain(e.Field), e.Items, e.Limit)
}

func (e *TooManyItemsError) Unwrap() error { return ErrTooManyItems }

// Decode decodes the single JSON value in body into v, a non-nil pointer, as
// json.Unmarshal would, and returns an error wrapping ErrMalformed when:
//   - body is not valid UTF-8, or not exactly one JSON value (white space
//     around it is fine; an empty body is "unexpected end of JSON");
//   - an object for a struct has a key that is not byte for byte the JSON
//     name of one of its fields ("unknown field \"generation.Id\"": the path
//     of keys, as encoding/json names fields); struct fields follow
//     encoding/json's rules: json tag name, else the Go name, "-" skipped,
//     embedded structs' fields promoted;
//   - any object repeats a key, compared after unescaping
//     ("duplicate key \"deliveries\"");
//   - objects and arrays nest deeper than MaxDepth;
//   - a value has the wrong type ("generation.id must be a string, got
//     number"; "body must be an object, got array" for the whole body).
//
// A struct field tagged `strictjson:"maxItems=N"` (a slice or an array,
// through pointers) takes a JSON array of at most N elements: a longer one
// gives a *TooManyItemsError once the rest of the body has passed the check,
// so that no element is allocated for a body that is refused for its
// length. The tag bounds that field's array only, not arrays nested in its
// elements, and not a []byte sent as a base64 string. A tag other than
// maxItems=N, N from 1 to 1<<31-1, or on a field of another type makes
// Decode panic, naming the field: it is a mistake in the program.
//
// Maps, interfaces, and types with their own UnmarshalJSON take objects
// with any keys, still without repeats. A json.RawMessage is only checked
// for syntax (and nesting up to encoding/json's limit of 10000): it is kept
// as sent, for the caller to Decode on its own, so a bad item of a batch
// fails alone. JSON null leaves the target as it is, as in encoding/json. A
// lone surrogate escape ("\ud800") is not refused: it decodes to U+FFFD, as
// in encoding/json, and payload.Normalize refuses that character.
//
// Nothing is written to v unless the body passes every check but the type
// check; a type error may leave v partly filled, as with encoding/json. A
// nil or non-pointer v gives a *json.InvalidUnmarshalError, not ErrMalformed.
// Messages quote at most 64 bytes of any key or value.
func Decode(body []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	if err := check(body, schemaOf(rv.Type().Elem())); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields() // a second line: check has refused unknown keys
	if err := dec.Decode(v); err != nil {
		return describe(err)
	}
	return nil
}

// check runs the one-pass check of body against n.
func check(body []byte, n *node) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not valid UTF-8", ErrMalformed)
	}
	s := scanners.Get().(*scanner)
	defer s.release()
	s.data = body
	return s.document(n)
}

// describe turns an encoding/json decoding error into one that wraps
// ErrMalformed and names the field.
func describe(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return fmt.Errorf("%w: %s must be %s, got %s", ErrMalformed, plain(field), expected(typeErr.Type), plain(typeErr.Value))
	}
	return fmt.Errorf("%w: %s", ErrMalformed, plain(strings.TrimPrefix(err.Error(), "json: ")))
}

// expected says in JSON terms what a value of Go type t must be.
func expected(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "a number fitting " + t.Kind().String()
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string or an array"
		}
		return "an array"
	case reflect.Array:
		return "an array"
	default:
		return "a value of type " + t.String()
	}
}

// maxQuoted is how many bytes of a key or value a message repeats.
const maxQuoted = 64

// clip shortens s to at most maxQuoted bytes, on a rune boundary, marking the
// cut with "...".
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// quote is clip then strconv.Quote: safe to echo in a message and a log.
func quote(s string) string { return strconv.Quote(clip(s)) }

// plain is clip, quoting only text that holds a character that is not
// printable (a map key can hold "\r\n"), so that field paths read as is.
func plain(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return quote(s)
	}
	return clip(s)
}
