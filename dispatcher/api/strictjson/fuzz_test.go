package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: Decode never panics; keys unescape as in encoding/json; every refusal wraps ErrMalformed but a batch over its limit; what it
// accepts, encoding/json accepts too, with the same result, for each body
// the API decodes and for generic targets. Its syntax check agrees with
// json.Valid: a json.RawMessage target takes exactly the valid bodies, and
// an interface target refuses a valid body only for a repeated key, depth,
// or a number out of float64's range.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		delivery(gen),
		`{"deliveries":[` + delivery(gen) + `,{"webhook":"a","webhook":"b"}]}`,
		`{"url":"https://a.example.com/"}`,
		`{"state":"failed","since":"2024-01-15T10:30:00Z"}`,
		`{"a":"x","b":{"c":[1,{"d":2}]},"gens":[` + gen + `],"raw":{"e":null},"n":3}`,
		`{"WEBHOOK":"x","webhoo` + "\u212a" + `":"y"}`,
		`{"b":{"\ud83d\ude00":1,"\ud83d":2,"\u0061":[true,false,null,-0.5e+3]}}`,
		strings.Repeat(`{"b":`, 17) + "1" + strings.Repeat("}", 17),
		`{"a":"x"} {}`,
		`"\ud800\ud800\udc00\udc00\u00e9\"\\\/\b\f\n\r\t"`,
		"\ufeff{}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Keys are compared as encoding/json unescapes them.
		var str string
		if len(body) >= 2 && body[0] == '"' && body[len(body)-1] == '"' && utf8.Valid(body) && json.Unmarshal(body, &str) == nil {
			if got := string(unescape(nil, body[1:len(body)-1])); got != str {
				t.Fatalf("unescape(%s) = %q, encoding/json reads %q", body, got, str)
			}
		}
		for _, into := range []func() any{newDelivery, newEnvelope, newRedeliver, newList, newMixed,
			func() any { return new(any) }, func() any { return new(json.RawMessage) }} {
			got, want := into(), into()
			err := Decode(body, got)
			var tooMany *TooManyItemsError
			if errors.As(err, &tooMany) {
				// Only the envelope has a limit, and only a valid body
				// reaches it.
				if _, ok := got.(*envelope); !ok || tooMany.Limit != batchLimit || tooMany.Items <= batchLimit || !json.Valid(body) {
					t.Fatalf("Decode(%q, %T) = %v (%+v)", body, got, err, *tooMany)
				}
				var all envelope
				if err := json.Unmarshal(body, &all); err != nil || len(all.Deliveries) != tooMany.Items {
					t.Fatalf("Decode(%q) counted %d items; encoding/json: %d, %v", body, tooMany.Items, len(all.Deliveries), err)
				}
				continue
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode(%q, %T) = %v, want ErrMalformed", body, got, err)
				}
				checkRefusal(t, body, got, err)
				continue
			}
			if !utf8.Valid(body) || !json.Valid(body) {
				t.Fatalf("Decode(%q, %T) accepted invalid UTF-8 JSON", body, got)
			}
			if err := json.Unmarshal(body, want); err != nil {
				t.Fatalf("Decode(%q, %T) accepted what encoding/json refuses: %v", body, got, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode(%q) = %#v, encoding/json gives %#v", body, got, want)
			}
		}
	})
}

// checkRefusal compares a refusal with json.Valid where the target leaves
// syntax as the only reason to refuse.
func checkRefusal(t *testing.T, body []byte, target any, err error) {
	t.Helper()
	valid := utf8.Valid(body) && json.Valid(body)
	switch target.(type) {
	case *json.RawMessage:
		if valid {
			t.Fatalf("Decode(%q, raw) = %v, but the body is valid", body, err)
		}
	case *any:
		msg := err.Error()
		if valid && !strings.Contains(msg, "duplicate key") && !strings.Contains(msg, "nested deeper") &&
			!strings.Contains(msg, "must be a number fitting float64") {
			t.Fatalf("Decode(%q, any) = %v, but the body is valid", body, err)
		}
	}
}
