package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/payload"
)

// batchLimit is api.MaxBatchItems, the batch envelope's maxItems (a tag
// cannot name a constant; api's TestBatchRequestLimit holds the real tag to
// that constant).
const batchLimit = 500

// The bodies the API decodes, restated: a single delivery, the batch
// envelope, the redeliver body and the listing filter.
type (
	deliveryRequest struct {
		Webhook    string              `json:"webhook"`
		Generation *payload.Generation `json:"generation"`
	}
	envelope struct {
		Deliveries []json.RawMessage `json:"deliveries" strictjson:"maxItems=500"`
	}
	redeliverRequest struct {
		URL *string `json:"url"`
	}
	listRequest struct {
		State string `json:"state"`
		Since string `json:"since"`
	}
	// mixed has every kind of node: struct, pointer, slice, map, interface, raw.
	mixed struct {
		A    string               `json:"a"`
		B    map[string]any       `json:"b"`
		Gens []payload.Generation `json:"gens"`
		Raw  json.RawMessage      `json:"raw"`
		N    *int                 `json:"n"`
	}
)

const (
	gen  = `{"id":"507f1f77bcf86cd799439011","status":"success","tool":"create-image","type":"image","output":"https://files.example.com/a.png","thumbnail":null,"createdAt":"2024-01-15T10:30:00Z"}`
	hook = `"https://hooks.example.com/a"`
)

// delivery is a single-delivery body with the generation object gen.
func delivery(gen string) string { return `{"webhook":` + hook + `,"generation":` + gen + `}` }

// decodeCase is one body, what to decode it into, and the error wanted: ""
// for none, else a text the message must hold (it must wrap ErrMalformed).
type decodeCase struct {
	name    string
	body    string
	into    func() any
	wantErr string
}

func newDelivery() any  { return new(deliveryRequest) }
func newEnvelope() any  { return new(envelope) }
func newRedeliver() any { return new(redeliverRequest) }
func newList() any      { return new(listRequest) }
func newMixed() any     { return new(mixed) }

func runDecodeCases(t *testing.T, tests []decodeCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Decode([]byte(tt.body), tt.into())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode(%.80s) = %v, want nil", tt.body, err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode(%.80s) = %v, want ErrMalformed mentioning %q", tt.body, err, tt.wantErr)
			}
		})
	}
}

// TestDecodeFoldedKeys: a key must be a field's JSON name byte for byte.
// encoding/json matches names case-insensitively, with Unicode folding, so
// each of these bodies would set a field (and the last spelling would win).
func TestDecodeFoldedKeys(t *testing.T) {
	tests := []decodeCase{
		{"upper case", `{"WEBHOOK":` + hook + `,"generation":` + gen + `}`, newDelivery, `unknown field "WEBHOOK"`},
		{"Kelvin sign", `{"webhoo` + "\u212a" + `":` + hook + `,"generation":` + gen + `}`, newDelivery, `unknown field "webhoo` + "\u212a" + `"`},
		{"Kelvin sign escaped", `{"webhoo\u212a":` + hook + `}`, newDelivery, `unknown field "webhoo` + "\u212a" + `"`},
		{"second spelling after the exact one", `{"webhook":` + hook + `,"Webhook":"https://evil.example.com/"}`, newDelivery, `unknown field "Webhook"`},
		{"nested Id", delivery(strings.Replace(gen, `{`, `{"Id":"other",`, 1)), newDelivery, `unknown field "generation.Id"`},
		{"nested ID", delivery(strings.Replace(gen, `"id"`, `"ID"`, 1)), newDelivery, `unknown field "generation.ID"`},
		{"nested createdat", delivery(strings.Replace(gen, `"createdAt"`, `"createdat"`, 1)), newDelivery, `unknown field "generation.createdat"`},
		{"Generation", `{"webhook":` + hook + `,"Generation":` + gen + `}`, newDelivery, `unknown field "Generation"`},
		{"envelope Deliveries", `{"Deliveries":[` + delivery(gen) + `]}`, newEnvelope, `unknown field "Deliveries"`},
		{"URL", `{"URL":"https://a.example.com/"}`, newRedeliver, `unknown field "URL"`},
		{"long s folds to s", `{"` + "\u017f" + `tate":"failed"}`, newList, `unknown field "` + "\u017f" + `tate"`},
		{"slice element", `{"gens":[` + strings.Replace(gen, `"type"`, `"Type"`, 1) + `]}`, newMixed, `unknown field "gens.Type"`},
		{"exact name spelled with escapes", `{"\u0077ebhook":` + hook + `,"generation":` + gen + `}`, newDelivery, ""},
		{"exact names", delivery(gen), newDelivery, ""},
	}
	for _, tt := range tests {
		if tt.wantErr != "" && json.Unmarshal([]byte(tt.body), tt.into()) != nil {
			t.Errorf("%s: encoding/json refuses the body too; the case shows nothing", tt.name)
		}
	}
	runDecodeCases(t, tests)
}

// TestDecodeRepeatedKeys: no object at any level may repeat a key, compared
// after unescaping, the envelope included.
func TestDecodeRepeatedKeys(t *testing.T) {
	item := delivery(gen)
	runDecodeCases(t, []decodeCase{
		{"envelope deliveries twice", `{"deliveries":[` + item + `],"deliveries":[` + item + `]}`, newEnvelope, `duplicate key "deliveries"`},
		{"top level", `{"webhook":"https://a.example.com/","webhook":` + hook + `}`, newDelivery, `duplicate key "webhook"`},
		{"nested", delivery(strings.Replace(gen, `{`, `{"id":"other",`, 1)), newDelivery, `duplicate key "generation.id"`},
		{"by escape", delivery(strings.Replace(gen, `{`, `{"\u0069d":"other",`, 1)), newDelivery, `duplicate key "generation.id"`},
		{"null then value", `{"generation":null,"generation":` + gen + `}`, newDelivery, `duplicate key "generation"`},
		{"in a map", `{"b":{"c":1,"c":2}}`, newMixed, `duplicate key "b.c"`},
		{"in an interface value", `{"b":{"x":[{"k":1},{"k":1,"k":2}]}}`, newMixed, `duplicate key "b.x.k"`},
		{"in a slice of structs", `{"gens":[` + gen + `,` + strings.Replace(gen, `{`, `{"type":"video",`, 1) + `]}`, newMixed, `duplicate key "gens.type"`},
		{"two lone surrogates are both U+FFFD", `{"b":{"\ud800":1,"\udc00":2}}`, newMixed, "duplicate key"},
		{"escaped pair and the character", `{"b":{"\ud83d\ude00":1,"` + "\U0001F600" + `":2}}`, newMixed, "duplicate key"},
		{"same key in sibling objects", `{"b":{"c":{"k":1},"d":{"k":2}},"gens":[` + gen + `,` + gen + `]}`, newMixed, ""},
		{"same key at two depths", `{"b":{"b":{"b":1}}}`, newMixed, ""},
		{"a pair is not its halves", `{"b":{"\ud83d\ude00":1,"\ud83d":2,"\ude00":3}}`, newMixed, "duplicate key"},
		{"repeat inside an item is the item's", `{"deliveries":[{"webhook":"a","webhook":"b"}]}`, newEnvelope, ""},
	})
}

// TestDecode covers what the decoder refused before strictjson and still
// refuses, and what it accepts.
func TestDecode(t *testing.T) {
	deep := func(n int) string { return strings.Repeat(`{"b":`, n) + "1" + strings.Repeat("}", n) }
	runDecodeCases(t, []decodeCase{
		{"ok", delivery(gen), newDelivery, ""},
		{"ok with white space", " \t\r\n" + delivery(gen) + "\n", newDelivery, ""},
		{"null", `null`, newDelivery, ""},
		{"fraction for an int", `{"a":"x","b":{"c":[1,{"d":2}],"e":null},"gens":[` + gen + `],"raw":{"any":["thing"]},"n":-1.5e0}`, newMixed, "n must be a number fitting int, got number -1.5e0"},
		{"every kind", `{"a":"x","b":{"c":[1,{"d":2,"e":true,"f":false,"g":-0.5E+3}]},"gens":[],"raw":[],"n":7}`, newMixed, ""},
		// Encoding.
		{"invalid UTF-8", delivery(strings.Replace(gen, "create-image", "create-\xff\xfe", 1)), newDelivery, "not valid UTF-8"},
		{"overlong UTF-8", delivery(strings.Replace(gen, "create-image", "create-\xc0\xaf", 1)), newDelivery, "not valid UTF-8"},
		{"invalid UTF-8 in a raw item", `{"deliveries":["` + "\xff" + `"]}`, newEnvelope, "not valid UTF-8"},
		{"BOM", "\ufeff" + delivery(gen), newDelivery, "invalid character"},
		{"NUL byte", "{\"webhook\":\x00}", newDelivery, "invalid character"},
		{"raw newline in a string", delivery(strings.Replace(gen, "create-image", "create\nimage", 1)), newDelivery, "invalid character '\\n' in a string"},
		{"bad escape", `{"webhook":"\x"}`, newDelivery, "in a string escape"},
		{"short unicode escape", `{"webhook":"\u12"}`, newDelivery, "in a \\u escape"},
		// Fields and keys.
		{"unknown field", `{"webhook":` + hook + `,"generation":` + gen + `,"priority":1}`, newDelivery, `unknown field "priority"`},
		{"unknown generation field", delivery(strings.Replace(gen, `{`, `{"secret":"x",`, 1)), newDelivery, `unknown field "generation.secret"`},
		{"unknown field in a struct after a map", `{"b":{},"gens":[{"x":1}]}`, newMixed, `unknown field "gens.x"`},
		{"long unknown key is clipped", `{"` + strings.Repeat("k", 5000) + `":1}`, newDelivery, `unknown field "` + strings.Repeat("k", 64) + `..."`},
		{"control character in a key is escaped", `{"b":{"a\r\n":1,"a\r\n":2}}`, newMixed, `duplicate key "b.a\r\n"`},
		// Types.
		{"webhook a number", `{"webhook":42}`, newDelivery, "webhook must be a string, got number"},
		{"webhook an object", `{"webhook":{"url":` + hook + `}}`, newDelivery, "webhook must be a string, got object"},
		{"generation a string", `{"generation":"x"}`, newDelivery, "generation must be an object, got string"},
		{"generation an array", `{"generation":[` + gen + `]}`, newDelivery, "generation must be an object, got array"},
		{"id a number", `{"generation":{"id":12345}}`, newDelivery, "generation.id must be a string, got number"},
		{"id 1e999", `{"generation":{"id":1e999}}`, newDelivery, "generation.id must be a string"},
		{"huge number for a string", `{"a":1e999999}`, newMixed, "a must be a string"},
		{"thumbnail a bool", `{"generation":{"thumbnail":true}}`, newDelivery, "generation.thumbnail must be a string, got bool"},
		{"top-level array", `[` + delivery(gen) + `]`, newDelivery, "body must be an object, got array"},
		{"top-level string", `"hello"`, newDelivery, "body must be an object, got string"},
		{"url a number", `{"url":5}`, newRedeliver, "url must be a string, got number"},
		{"deliveries an object", `{"deliveries":{}}`, newEnvelope, "deliveries must be an array, got object"},
		// Depth.
		{"16 deep", `{"b":` + deep(15) + `}`, newMixed, ""},
		{"17 deep", `{"b":` + deep(16) + `}`, newMixed, "nested deeper than 16 levels"},
		{"40 deep", deep(40), newMixed, "nested deeper than 16 levels"},
		{"30000 arrays", strings.Repeat("[", 30000) + strings.Repeat("]", 30000), newDelivery, "nested deeper than 16 levels"},
		{"17 deep under a wrong type", `{"webhook":` + strings.Repeat("[", 17) + strings.Repeat("]", 17) + `}`, newDelivery, "nested deeper than 16 levels"},
		// Syntax and trailing data.
		{"empty", ``, newDelivery, "unexpected end of JSON"},
		{"white space only", " \n", newDelivery, "unexpected end of JSON"},
		{"truncated", delivery(gen)[:60], newDelivery, "unexpected end of JSON"},
		{"truncated literal", `{"b":{"x":tru`, newMixed, "unexpected end of JSON"},
		{"bad literal", `{"b":{"x":nul}}`, newMixed, "invalid character '}' in a literal"},
		{"unquoted key", `{webhook:1}`, newDelivery, "invalid character 'w' looking for an object key"},
		{"trailing comma", `{"webhook":` + hook + `,}`, newDelivery, "looking for an object key"},
		{"missing colon", `{"webhook" ` + hook + `}`, newDelivery, "after an object key"},
		{"leading zero", `{"b":{"x":01}}`, newMixed, "invalid character '1' after an object value"},
		{"bare minus", `{"b":{"x":-}}`, newMixed, "looking for a value"},
		{"empty fraction", `{"b":{"x":1.}}`, newMixed, "after a decimal point"},
		{"empty exponent", `{"b":{"x":1e+}}`, newMixed, "in an exponent"},
		{"array trailing comma", `{"b":{"x":[1,]}}`, newMixed, "looking for a value"},
		{"trailing object", delivery(gen) + ` {}`, newDelivery, "unexpected data after the JSON value"},
		{"two values", delivery(gen) + delivery(gen), newDelivery, "unexpected data after the JSON value"},
		{"trailing garbage", `{}x`, newDelivery, "unexpected data after the JSON value"},
	})
}

// TestDecodeLoneSurrogate: a lone surrogate escape is not malformed JSON:
// it decodes to U+FFFD, as in encoding/json, and payload.Normalize is what
// refuses the character (the API answers invalid_generation).
func TestDecodeLoneSurrogate(t *testing.T) {
	var req deliveryRequest
	if err := Decode([]byte(delivery(strings.Replace(gen, "create-image", `create-\ud800`, 1))), &req); err != nil {
		t.Fatalf("Decode = %v", err)
	}
	if req.Generation.Tool != "create-\ufffd" {
		t.Fatalf("tool %q, want %q", req.Generation.Tool, "create-\ufffd")
	}
	if _, err := payload.Normalize(*req.Generation); !errors.Is(err, payload.ErrInvalid) {
		t.Fatalf("Normalize = %v, want payload.ErrInvalid", err)
	}
}

// TestDecodeEnvelope: a batch's items come back as sent, each to be
// decoded alone, so that one bad item fails alone.
func TestDecodeEnvelope(t *testing.T) {
	items := []string{
		delivery(gen),
		`{"webhook":"a","webhook":"b"}`,
		`{"WEBHOOK":"a"}`,
		strings.Repeat("[", 40) + strings.Repeat("]", 40),
		`"a string"`,
		` { "generation" : null } `,
	}
	wantItemErr := []string{"", `duplicate key "webhook"`, `unknown field "WEBHOOK"`, "nested deeper than 16 levels", "body must be an object, got string", ""}
	var env envelope
	if err := Decode([]byte(`{"deliveries":[`+strings.Join(items, ",")+`]}`), &env); err != nil {
		t.Fatalf("Decode(envelope) = %v", err)
	}
	if len(env.Deliveries) != len(items) {
		t.Fatalf("got %d items, want %d", len(env.Deliveries), len(items))
	}
	for i, raw := range env.Deliveries {
		if string(raw) != strings.TrimSpace(items[i]) {
			t.Errorf("item %d = %s, want %s", i, raw, items[i])
		}
		var req deliveryRequest
		err := Decode(raw, &req)
		if want := wantItemErr[i]; want == "" && err != nil || want != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want)) {
			t.Errorf("Decode(item %d) = %v, want %q", i, err, want)
		}
	}

	runDecodeCases(t, []decodeCase{
		{"syntax error in an item", `{"deliveries":[{"webhook":}]}`, newEnvelope, "invalid character '}' looking for a value"},
		{"unterminated item", `{"deliveries":[{"webhook":"x"]}`, newEnvelope, "invalid character ']' after an object value"},
		{"item key not a string", `{"deliveries":[{1:2}]}`, newEnvelope, "looking for an object key"},
		{"raw nesting up to encoding/json's limit", `{"deliveries":[` + strings.Repeat("[", maxRawDepth-2) + strings.Repeat("]", maxRawDepth-2) + `]}`, newEnvelope, ""},
		{"raw nesting past encoding/json's limit", `{"deliveries":[` + strings.Repeat("[", maxRawDepth-1) + strings.Repeat("]", maxRawDepth-1) + `]}`, newEnvelope, "nested deeper than 10000 levels"},
		{"empty", `{"deliveries":[]}`, newEnvelope, ""},
		{"null", `{"deliveries":null}`, newEnvelope, ""},
	})
}

// TestDecodeTarget: v must be a non-nil pointer, as for json.Unmarshal.
func TestDecodeTarget(t *testing.T) {
	var nilPtr *deliveryRequest
	for _, v := range []any{nil, deliveryRequest{}, nilPtr} {
		var invalid *json.InvalidUnmarshalError
		if err := Decode([]byte(`{}`), v); !errors.As(err, &invalid) || errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%T) = %v, want a *json.InvalidUnmarshalError", v, err)
		}
	}
	// Types that decode themselves, and a raw message at the top.
	var raw json.RawMessage
	if err := Decode([]byte(` {"WEBHOOK":1,"WEBHOOK":2} `), &raw); err != nil || string(raw) != `{"WEBHOOK":1,"WEBHOOK":2}` {
		t.Errorf("Decode(raw) = %v, %s", err, raw)
	}
	var anything any
	if err := Decode([]byte(`{"a":[1,"b",null]}`), &anything); err != nil || !reflect.DeepEqual(anything, map[string]any{"a": []any{1.0, "b", nil}}) {
		t.Errorf("Decode(any) = %v, %v", err, anything)
	}
}
