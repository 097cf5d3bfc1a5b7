package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

type (
	Promoted struct {
		P string
		Q string `json:"q"`
	}
	hidden struct {
		H string `json:"h"`
	}
	Left struct {
		Both  string
		Named string `json:"named"`
	}
	Right struct {
		Both  string
		Named string `json:"named"`
		Won   string `json:"won"`
	}
	Deeper struct {
		Won string `json:"won"` // deeper than Right.Won: loses
	}
	Wrap   struct{ Deeper }
	Shadow struct {
		Top string `json:"top"`
	}
	Kinds int
	// fields exercises encoding/json's field rules: promotion from embedded
	// structs (exported, unexported, through a pointer), json:"-" and
	// json:"-,", invalid tag names, unexported fields, and names that
	// cancel out or are shadowed.
	fields struct {
		Promoted
		hidden
		*Left
		Right
		Wrap
		Shadow
		Kinds          // an embedded non-struct is a field named after its type
		kinds   string // unexported: ignored
		Top     string // "Top": Shadow.Top is "top", another name
		Dash    string `json:"-"`
		Minus   string `json:"-,"`
		Bad     string `json:"a\"b"`
		Opt     string `json:",omitempty"`
		Spaced  string `json:"with space"`
		Tagged  Shadow `json:"tagged"`
		Renamed string `json:"P"` // shallower than Promoted.P: wins
	}
)

// TestSchemaFieldNames: the names the scanner accepts are exactly the keys
// encoding/json writes for the type, which are the names it reads.
func TestSchemaFieldNames(t *testing.T) {
	n := schemaOf(reflect.TypeFor[fields]())
	got := slices.Clone(n.names)
	sort.Strings(got)

	v := fields{Left: &Left{}, Opt: "set"}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	var want []string
	for k := range keys {
		want = append(want, k)
	}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("names %q, encoding/json writes %q", got, want)
	}
	for _, name := range []string{"Both", "named", "Won", "kinds", "Dash", "a\"b", "q\x00"} {
		if _, ok := n.fields[name]; ok {
			t.Errorf("name %q accepted", name)
		}
	}
}

// TestSchemaSameFields: a body that uses every name decodes as with
// encoding/json, field for field.
func TestSchemaSameFields(t *testing.T) {
	n := schemaOf(reflect.TypeFor[fields]())
	var body bytes.Buffer
	body.WriteString("{")
	for i, name := range n.names {
		if i > 0 {
			body.WriteString(",")
		}
		k, _ := json.Marshal(name)
		body.Write(k)
		switch name {
		case "Kinds":
			body.WriteString(":7")
		case "tagged":
			body.WriteString(`:{"top":"t"}`)
		default:
			body.WriteString(`:"` + name + `"`)
		}
	}
	body.WriteString("}")
	got, want := fields{Left: &Left{}}, fields{Left: &Left{}}
	if err := Decode(body.Bytes(), &got); err != nil {
		t.Fatalf("Decode(%s) = %v", body.Bytes(), err)
	}
	if err := json.Unmarshal(body.Bytes(), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode gave %+v, encoding/json %+v", got, want)
	}
}

type (
	tree struct {
		Name string  `json:"name"`
		Kids []*tree `json:"kids"`
	}
	stamped struct {
		At  time.Time        `json:"at"`
		Raw *json.RawMessage `json:"raw"`
	}
)

// TestSchemaPointerToItself: type P *P has nothing to describe; building its
// schema ends. (encoding/json itself never ends decoding into one.)
func TestSchemaPointerToItself(t *testing.T) {
	type self *self
	if n := schemaOf(reflect.TypeFor[self]()); n != anyNode {
		t.Fatalf("schemaOf(self) = %+v, want anyNode", n)
	}
}

// TestSchemaShapes: nested, recursive and self-decoding types.
func TestSchemaShapes(t *testing.T) {
	newTree := func() any { return new(tree) }
	newByName := func() any { return new(map[string]tree) }
	newStamped := func() any { return new(stamped) }
	newArray := func() any { return new([2]tree) }
	runDecodeCases(t, []decodeCase{
		{"recursive", `{"name":"a","kids":[{"name":"b","kids":[{"name":"c","kids":null}]}]}`, newTree, ""},
		{"recursive, folded deep down", `{"kids":[{"kids":[{"Name":"c"}]}]}`, newTree, `unknown field "kids.kids.Name"`},
		{"recursive, repeated deep down", `{"kids":[{"kids":[{"name":"c","name":"d"}]}]}`, newTree, `duplicate key "kids.kids.name"`},
		{"map of structs", `{"x":{"name":"a"},"y":{"name":"b"}}`, newByName, ""},
		{"map of structs, folded", `{"x":{"NAME":"a"}}`, newByName, `unknown field "x.NAME"`},
		{"map of structs, repeated map key", `{"x":{},"x":{}}`, newByName, `duplicate key "x"`},
		{"array type", `[{"name":"a"},{"naMe":"b"}]`, newArray, `unknown field "naMe"`},
		{"time and raw", `{"at":"2024-01-15T10:30:00Z","raw":{"Any":1}}`, newStamped, ""},
		{"time, wrong", `{"at":"yesterday"}`, newStamped, `parsing time "yesterday"`},
		{"time, folded key", `{"AT":"2024-01-15T10:30:00Z"}`, newStamped, `unknown field "AT"`},
	})
}

// TestSchemaConcurrent: the cache is built once, safely, under load.
func TestSchemaConcurrent(t *testing.T) {
	type fresh struct {
		A tree `json:"a"`
	}
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() { errs <- Decode([]byte(`{"a":{"Kids":[]}}`), new(fresh)) }()
	}
	for range cap(errs) {
		if err := <-errs; !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `unknown field "a.Kids"`) {
			t.Errorf("Decode = %v, want unknown field", err)
		}
	}
}
