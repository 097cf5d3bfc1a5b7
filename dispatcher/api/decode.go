package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting in request bodies; our requests need four levels.
const maxJSONDepth = 16

// errMalformed is wrapped by every decodeStrict error.
var errMalformed = errors.New("malformed JSON")

// decodeStrict decodes one JSON value from body into v, refusing what
// encoding/json would quietly accept: invalid UTF-8 (it would become U+FFFD),
// duplicate object keys (the last would win), unknown fields, nesting deeper
// than maxJSONDepth, and anything after the value.
func decodeStrict(body []byte, v any) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not valid UTF-8", errMalformed)
	}
	if err := checkStructure(body); err != nil {
		return err
	}
	return decodeOne(body, v)
}

// decodeOne decodes exactly one JSON value, refusing unknown fields and
// anything but white space after the value.
func decodeOne(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return fmt.Errorf("%w: unexpected data after the JSON value", errMalformed)
	}
	return nil
}

// decodeEnvelope is decodeStrict without the duplicate-key and depth walk, for
// a batch whose items are raw values checked one by one with decodeStrict.
func decodeEnvelope(body []byte, v any) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not valid UTF-8", errMalformed)
	}
	return decodeOne(body, v)
}

// checkStructure scans body once for duplicate object keys and nesting depth.
// It is a byte scanner, not a validator: the json decoding that follows
// reports syntax errors. (A json.Decoder.Token walk did the same at several
// times the cost, and it ran on every request.)
func checkStructure(body []byte) error {
	type frame struct {
		object    bool
		expectKey bool
		keys      [][]byte
	}
	var stack []frame
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("%w: nested deeper than %d levels", errMalformed, maxJSONDepth)
			}
			stack = append(stack, frame{object: c == '{', expectKey: c == '{'})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
		case '"':
			start := i + 1
			escaped := false
			for i++; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					escaped = true
					i++
				}
			}
			n := len(stack)
			if n == 0 || !stack[n-1].object || !stack[n-1].expectKey || i >= len(body) {
				continue
			}
			top := &stack[n-1]
			top.expectKey = false
			key := body[start:i]
			if escaped {
				var k string
				if json.Unmarshal(body[start-1:i+1], &k) != nil {
					continue // the decoder reports the bad escape
				}
				key = []byte(k)
			}
			for _, seen := range top.keys {
				if bytes.Equal(seen, key) {
					return fmt.Errorf("%w: duplicate key %q", errMalformed, key)
				}
			}
			top.keys = append(top.keys, key)
		}
	}
	return nil
}

// describeJSONError turns encoding/json errors into messages that name the field.
func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return fmt.Errorf("%w: %s must be %s, got %s", errMalformed, field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("%w: %s at byte %d", errMalformed, syntaxErr.Error(), syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: unexpected end of JSON", errMalformed)
	default:
		return fmt.Errorf("%w: %s", errMalformed, err.Error())
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "ptr":
		return "a string or null"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	default:
		return goKind
	}
}
