package dispatcher

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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
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
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: unexpected data after the JSON value", errMalformed)
	}
	return nil
}

// checkStructure walks the tokens once for duplicate keys and depth.
func checkStructure(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object    bool
		expectKey bool
		keys      map[string]struct{}
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 {
				return fmt.Errorf("%w: unexpected end of JSON", errMalformed)
			}
			return nil
		}
		if err != nil {
			return describeJSONError(err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expectKey {
			if key, ok := tok.(string); ok {
				if _, dup := top.keys[key]; dup {
					return fmt.Errorf("%w: duplicate key %q", errMalformed, key)
				}
				top.keys[key] = struct{}{}
				top.expectKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxJSONDepth {
				return fmt.Errorf("%w: nested deeper than %d levels", errMalformed, maxJSONDepth)
			}
			if top != nil && top.object {
				top.expectKey = true
			}
			f := &frame{object: tok == json.Delim('{'), expectKey: true}
			if f.object {
				f.keys = make(map[string]struct{})
			}
			stack = append(stack, f)
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.object {
				top.expectKey = true
			}
		}
	}
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
