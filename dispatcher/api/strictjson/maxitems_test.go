package strictjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type (
	// limited has bounded lists of several element kinds, through a
	// pointer, and one list of the same type left unbounded.
	limited struct {
		Raw   []json.RawMessage  `json:"raw" strictjson:"maxItems=2"`
		Same  []json.RawMessage  `json:"same"`
		Ptr   *[]int             `json:"ptr" strictjson:"maxItems=1"`
		Array [4]int             `json:"array" strictjson:"maxItems=3"`
		Kids  []limitedKid       `json:"kids" strictjson:"maxItems=2"`
		Grid  [][]int            `json:"grid" strictjson:"maxItems=2"`
		Map   map[string][]int   `json:"map"`
		Items map[string]limited `json:"items"`
	}
	limitedKid struct {
		Tags []string `json:"tags" strictjson:"maxItems=3"`
	}
	// limitedTree refers to itself through a bounded list of itself.
	limitedTree struct {
		Kids []limitedTree `json:"kids" strictjson:"maxItems=2"`
	}
	// selfList's limited field has the list type under construction.
	selfList []struct {
		L selfList `json:"l" strictjson:"maxItems=1"`
	}
)

// TestParseTag: maxItems=N with N a whole number from 1 to 1<<31-1, or no
// tag; anything else is an error.
func TestParseTag(t *testing.T) {
	for _, tt := range []struct {
		tag  string
		want int
	}{{"", 0}, {"maxItems=1", 1}, {"maxItems=500", 500}, {"maxItems=2147483647", 1<<31 - 1}} {
		if got, err := parseTag(tt.tag); err != nil || got != tt.want {
			t.Errorf("parseTag(%q) = %d, %v; want %d", tt.tag, got, err, tt.want)
		}
	}
	for _, tag := range []string{"maxItems=0", "maxItems=-1", "maxItems=", "maxItems", "maxItems=1x", "maxItems=+5",
		"maxItems=05", "maxItems=2147483648", "maxItems=1e3", "maxitems=5", "MaxItems=5", " maxItems=5", "maxItems=5,",
		"maxItems=5,maxItems=6", "minItems=5", "-"} {
		if got, err := parseTag(tag); err == nil {
			t.Errorf("parseTag(%q) = %d, nil; want an error", tag, got)
		}
	}
}

// TestSchemaMaxItems: the tag bounds its field's node only; another field
// of the same list type, and the type's own cached node, stay unbounded.
func TestSchemaMaxItems(t *testing.T) {
	n := schemaOf(reflect.TypeFor[limited]())
	for name, want := range map[string]int{"raw": 2, "same": 0, "ptr": 1, "array": 3, "kids": 2, "grid": 2, "map": 0} {
		if got := n.next[n.fields[name]].maxItems; got != want {
			t.Errorf("field %q: maxItems %d, want %d", name, got, want)
		}
	}
	if got := schemaOf(reflect.TypeFor[[]json.RawMessage]()).maxItems; got != 0 {
		t.Errorf("[]json.RawMessage: maxItems %d, want 0", got)
	}
	if grid := n.next[n.fields["grid"]]; grid.elem == nil || grid.elem.kind != kindList || grid.elem.maxItems != 0 {
		t.Errorf("grid elements: %+v, want an unbounded list", grid.elem)
	}
	var tr limitedTree
	if err := Decode([]byte(`{"kids":[{"kids":[{},{}]},{}]}`), &tr); err != nil || len(tr.Kids) != 2 || len(tr.Kids[0].Kids) != 2 {
		t.Errorf("limitedTree at its limits: %+v, %v", tr, err)
	}
	var tooMany *TooManyItemsError
	if err := Decode([]byte(`{"kids":[{"kids":[{},{},{}]}]}`), new(limitedTree)); !errors.As(err, &tooMany) || tooMany.Field != "kids.kids" {
		t.Errorf("limitedTree over at depth 2: %v, want kids.kids over", err)
	}
	// The limited copy of a list under construction gets its elements.
	l := schemaOf(reflect.TypeFor[selfList]())
	if inner := l.elem.next[0]; inner.maxItems != 1 || inner.elem != l.elem {
		t.Errorf("selfList.l: maxItems %d, elem %p, want 1 and %p", inner.maxItems, inner.elem, l.elem)
	}
}

// TestSchemaBadTag: a bad tag, or maxItems on a field that is not a list,
// panics when the type is first used, naming the field.
func TestSchemaBadTag(t *testing.T) {
	type (
		zero struct {
			L []int `json:"l" strictjson:"maxItems=0"`
		}
		word struct {
			L []int `strictjson:"maxItems=many"`
		}
		unknown struct {
			L []int `json:"l" strictjson:"minItems=1"`
		}
		scalar struct {
			S string `json:"s" strictjson:"maxItems=3"`
		}
		raw struct {
			R json.RawMessage `json:"r" strictjson:"maxItems=3"`
		}
		object struct {
			M map[string]int `json:"m" strictjson:"maxItems=3"`
		}
		nested struct {
			K []struct {
				L []int `json:"l" strictjson:"maxItems=x"`
			} `json:"k"`
		}
	)
	for _, tt := range []struct {
		v    any
		want string
	}{
		{new(zero), `zero.L: strictjson tag "maxItems=0": maxItems must be a whole number`},
		{new(word), `word.L: strictjson tag "maxItems=many"`},
		{new(unknown), `unknown.L: strictjson tag "minItems=1": want maxItems=N`},
		{new(scalar), `field "s" has maxItems but string is not a slice or an array`},
		{new(raw), `field "r" has maxItems but json.RawMessage is not a slice or an array`},
		{new(object), `field "m" has maxItems but map[string]int is not a slice or an array`},
		{new(nested), `.L: strictjson tag "maxItems=x"`},
	} {
		t.Run(reflect.TypeOf(tt.v).Elem().Name(), func(t *testing.T) {
			for range 2 { // again: a failed build caches nothing
				msg := func() (msg string) {
					defer func() { msg, _ = recover().(string) }()
					_ = Decode([]byte(`{}`), tt.v)
					return ""
				}()
				if !strings.HasPrefix(msg, "strictjson: ") || !strings.Contains(msg, tt.want) {
					t.Fatalf("Decode panics with %q, want a message holding %q", msg, tt.want)
				}
			}
		})
	}
}

// items is n comma-separated copies of item.
func items(n int, item string) string {
	return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
}

// TestMaxItems: a list at its limit is decoded; one over is refused with a
// *TooManyItemsError naming the field, the limit and the count, before
// anything is written; a malformed body is malformed whatever its length.
func TestMaxItems(t *testing.T) {
	ok := []struct{ name, body string }{
		{"raw at the limit", `{"raw":[` + items(2, `{"a":1}`) + `]}`},
		{"unbounded field of the same type", `{"same":[` + items(50, `0`) + `]}`},
		{"pointer at the limit", `{"ptr":[7]}`},
		{"array at the limit", `{"array":[1,2,3]}`},
		{"nested lists at their limits", `{"kids":[{"tags":["a","b","c"]},{"tags":[]}]}`},
		{"inner lists unbounded", `{"grid":[[` + items(10, `1`) + `],[]]}`},
		{"lists in a map unbounded", `{"map":{"a":[` + items(10, `1`) + `]}}`},
		{"empty and null", `{"raw":[],"ptr":null,"kids":null}`},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			var got, want limited
			if err := Decode([]byte(tt.body), &got); err != nil {
				t.Fatalf("Decode(%s) = %v", tt.body, err)
			}
			if err := json.Unmarshal([]byte(tt.body), &want); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("Decode(%s) = %+v, encoding/json gives %+v (%v)", tt.body, got, want, err)
			}
		})
	}

	over := []struct {
		name, body, field string
		limit, items      int
	}{
		{"raw one over", `{"raw":[` + items(3, `{"a":1}`) + `]}`, "raw", 2, 3},
		{"raw far over", `{"raw":[` + items(1000, `[]`) + `]}`, "raw", 2, 1000},
		{"pointer one over", `{"ptr":[1,2]}`, "ptr", 1, 2},
		{"array one over", `{"array":[1,2,3,4]}`, "array", 3, 4},
		{"nested list over", `{"kids":[{"tags":[]},{"tags":["a","b","c","d"]}]}`, "kids.tags", 3, 4},
		{"outer list over", `{"kids":[{},{},{"tags":["a"]}]}`, "kids", 2, 3},
		{"first of two over", `{"kids":[{"tags":["a","b","c","d","e"]}],"raw":[1,2,3]}`, "kids.tags", 3, 5},
		{"grid over", `{"grid":[[],[],[]]}`, "grid", 2, 3},
		{"in a map value", `{"items":{"x\ny":{"raw":[1,2,3]}}}`, "items.x\ny.raw", 2, 3},
	}
	for _, tt := range over {
		t.Run(tt.name, func(t *testing.T) {
			var got limited
			err := Decode([]byte(tt.body), &got)
			var tooMany *TooManyItemsError
			if !errors.As(err, &tooMany) || !errors.Is(err, ErrTooManyItems) || errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%.80s) = %v, want a *TooManyItemsError, not ErrMalformed", tt.body, err)
			}
			if tooMany.Field != tt.field || tooMany.Limit != tt.limit || tooMany.Items != tt.items {
				t.Fatalf("error %+v, want field %q, limit %d, items %d", *tooMany, tt.field, tt.limit, tt.items)
			}
			if !reflect.DeepEqual(got, limited{}) {
				t.Fatalf("Decode wrote %+v before refusing", got)
			}
		})
	}
	if got, want := (&TooManyItemsError{Field: "deliveries", Limit: 500, Items: 501}).Error(),
		"strictjson: deliveries holds 501 items, at most 500"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&TooManyItemsError{Field: "a\nb", Limit: 1, Items: 2}).Error(),
		`strictjson: "a\nb" holds 2 items, at most 1`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	// Malformed wins, wherever it is.
	runDecodeCases(t, []decodeCase{
		{"syntax error after the overflow", `{"raw":[1,2,3,}]}`, func() any { return new(limited) }, "invalid character '}'"},
		{"syntax error in a later field", `{"raw":[1,2,3],"same":[}`, func() any { return new(limited) }, "invalid character '}'"},
		{"repeated key after the overflow", `{"raw":[1,2,3],"raw":[]}`, func() any { return new(limited) }, `duplicate key "raw"`},
		{"trailing data", `{"raw":[1,2,3]} x`, func() any { return new(limited) }, "after the JSON value"},
		{"unknown key in an element past the limit", `{"kids":[{},{},{"Tags":[]}]}`, func() any { return new(limited) }, `unknown field "kids.Tags"`},
		{"type error is encoding/json's, after the limit", `{"ptr":["x"]}`, func() any { return new(limited) }, "ptr must be a number"},
	})
}

// TestMaxItemsRefusalAllocs: a batch envelope over its limit is refused
// without an allocation per element (encoding/json made a json.RawMessage
// for each of half a million before).
func TestMaxItemsRefusalAllocs(t *testing.T) {
	body := []byte(`{"deliveries":[` + items(maxBody/2-20, `0`) + `]}`)
	var err error
	allocs := testing.AllocsPerRun(3, func() { err = Decode(body, new(envelope)) })
	var tooMany *TooManyItemsError
	if !errors.As(err, &tooMany) || tooMany.Field != "deliveries" || tooMany.Limit != batchLimit || tooMany.Items != maxBody/2-20 {
		t.Fatalf("Decode = %v, want deliveries over %d", err, batchLimit)
	}
	// The error, its field name, a fresh scanner when sync.Pool drops one.
	if allocs > 32 {
		t.Errorf("%v allocations refusing %d items, want at most 32", allocs, tooMany.Items)
	}
}
