package strictjson

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// kind says how the scanner treats the JSON value a node describes.
type kind uint8

const (
	// kindAny takes any value; an object may have any keys. Interfaces,
	// scalars and types with their own UnmarshalJSON are kindAny: a
	// container where a scalar belongs is refused by encoding/json later.
	kindAny kind = iota
	// kindStruct takes an object whose keys are exactly its field names.
	kindStruct
	// kindMap takes an object with any keys, repeats compared as text (so
	// "1" and "01" for a map[int]T are two keys); values are described by elem.
	kindMap
	// kindList takes an array (a slice or an array type) of elem.
	kindList
	// kindRaw is json.RawMessage: syntax is checked, nothing inside is.
	kindRaw
)

// node describes what a Go type accepts, as far as the scanner cares: the
// exact key names of structs and where each key or element leads.
type node struct {
	kind   kind
	fields map[string]int // kindStruct: exact JSON name → index in next
	names  []string       // kindStruct: JSON names, by index
	next   []*node        // kindStruct: the node of each field, by index
	elem   *node          // kindMap, kindList: values or elements
	// maxItems bounds a kindList's length, 0 for no bound: the value of a
	// `strictjson:"maxItems=N"` tag on the struct field it belongs to.
	maxItems int
}

var (
	anyNode = &node{kind: kindAny}
	rawNode = &node{kind: kindRaw}

	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	schemaCache     sync.Map // reflect.Type → *node, complete nodes only
	schemaBuildMu   sync.Mutex
)

// schemaOf returns the node for t, built once per type and cached.
// Recursive types are fine: the nodes form a cycle. A struct field with a
// strictjson tag that is not valid (see parseTag) is a mistake in the
// program, not in a body: schemaOf panics, naming the type and the field.
func schemaOf(t reflect.Type) *node {
	if n, ok := schemaCache.Load(t); ok {
		return n.(*node)
	}
	schemaBuildMu.Lock()
	defer schemaBuildMu.Unlock()
	if n, ok := schemaCache.Load(t); ok {
		return n.(*node)
	}
	b := schemaBuilder{built: make(map[reflect.Type]*node)}
	n := b.node(t)
	// Every node is complete once the outermost call returns: a limited
	// list may have been made from one still under construction.
	for _, l := range b.limited {
		l.node.elem = l.of.elem
	}
	for typ, nd := range b.built {
		schemaCache.LoadOrStore(typ, nd)
	}
	schemaCache.LoadOrStore(t, n)
	return n
}

// schemaBuilder remembers the nodes of one schemaOf call, so that a type
// that refers to itself gets the node under construction.
type schemaBuilder struct {
	built   map[reflect.Type]*node
	limited []limitedList
}

// limitedList is a field's bounded copy of the list node of its type, whose
// elem is copied once the build is complete.
type limitedList struct{ node, of *node }

func (b *schemaBuilder) node(t reflect.Type) *node {
	// Pointers decode as what they point to; a type that is a pointer to
	// itself (type P *P) has nothing to describe.
	for hops := 0; t.Kind() == reflect.Pointer; hops++ {
		if hops > 64 {
			return anyNode
		}
		t = t.Elem()
	}
	if n, ok := b.built[t]; ok {
		return n
	}
	if n, ok := schemaCache.Load(t); ok {
		return n.(*node)
	}
	switch {
	case t == rawMessageType:
		return rawNode
	case implements(t, jsonUnmarshaler), implements(t, textUnmarshaler):
		// Their own code reads the value; encoding/json refuses an object
		// for a TextUnmarshaler.
		return anyNode
	}
	switch t.Kind() {
	case reflect.Struct:
		n := &node{kind: kindStruct}
		b.built[t] = n
		b.fillStruct(n, t)
		return n
	case reflect.Map:
		n := &node{kind: kindMap}
		b.built[t] = n
		n.elem = b.node(t.Elem())
		return n
	case reflect.Slice, reflect.Array:
		n := &node{kind: kindList}
		b.built[t] = n
		n.elem = b.node(t.Elem())
		return n
	default:
		return anyNode
	}
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || reflect.PointerTo(t).Implements(iface)
}

// field is a candidate JSON field of a struct: its name, whether a json tag
// named it, how deep in embedded structs it sits, and its type.
type field struct {
	name     string
	tagged   bool
	depth    int
	typ      reflect.Type
	maxItems int // from a strictjson tag; 0 for none
}

// fillStruct gives n the fields that encoding/json decodes into for t:
// exported fields named by their json tag (or Go name), "-" skipped, fields
// of embedded structs promoted. A name found at several depths belongs to
// the shallowest; several at that depth cancel out unless exactly one is
// tagged, and then no key reaches them, as in encoding/json.
func (b *schemaBuilder) fillStruct(n *node, t reflect.Type) {
	var all []field
	visited := map[reflect.Type]bool{}
	level := []reflect.Type{t}
	for depth := 0; len(level) > 0; depth++ {
		// An embedded type reached twice at one depth gives each of its
		// fields twice, so that they cancel out.
		times := map[reflect.Type]int{}
		var nextLevel []reflect.Type
		for _, st := range level {
			times[st]++
		}
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				sf := st.Field(i)
				ft := sf.Type
				if sf.Anonymous {
					et := ft
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if !validName(name) {
					name = ""
				}
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					nextLevel = append(nextLevel, ft)
					continue
				}
				maxItems, err := parseTag(sf.Tag.Get("strictjson"))
				if err != nil {
					panic(fmt.Sprintf("strictjson: %s.%s: %v", st, sf.Name, err))
				}
				f := field{name: name, tagged: name != "", depth: depth, typ: sf.Type, maxItems: maxItems}
				if f.name == "" {
					f.name = sf.Name
				}
				for range min(times[st], 2) {
					all = append(all, f)
				}
			}
		}
		level = nextLevel
	}

	sort.SliceStable(all, func(i, j int) bool {
		x, y := all[i], all[j]
		if x.name != y.name {
			return x.name < y.name
		}
		if x.depth != y.depth {
			return x.depth < y.depth
		}
		return x.tagged && !y.tagged
	})
	n.fields = make(map[string]int)
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].name == all[i].name {
			j++
		}
		group := all[i:j]
		i = j
		if len(group) > 1 && group[1].depth == group[0].depth && group[1].tagged == group[0].tagged {
			continue // ambiguous: encoding/json ignores the name
		}
		n.fields[group[0].name] = len(n.next)
		n.names = append(n.names, group[0].name)
		next := b.node(group[0].typ)
		if m := group[0].maxItems; m > 0 {
			if next.kind != kindList {
				panic(fmt.Sprintf("strictjson: %s: field %q has maxItems but %s is not a slice or an array", t, group[0].name, group[0].typ))
			}
			limited := &node{kind: kindList, elem: next.elem, maxItems: m}
			b.limited = append(b.limited, limitedList{limited, next})
			next = limited
		}
		n.next = append(n.next, next)
	}
}

// parseTag reads a strictjson struct tag: empty, or "maxItems=N" with N a
// decimal integer from 1 to 1<<31-1, the most elements the field's list may
// hold (the field must be a slice or an array, through pointers; it cannot
// be a json.RawMessage or have its own UnmarshalJSON). It returns N, or 0
// for an empty tag, and an error for anything else.
func parseTag(tag string) (maxItems int, err error) {
	if tag == "" {
		return 0, nil
	}
	key, value, ok := strings.Cut(tag, "=")
	if !ok || key != "maxItems" {
		return 0, fmt.Errorf("strictjson tag %q: want maxItems=N", tag)
	}
	n, err := strconv.ParseInt(value, 10, 32)
	if err != nil || n < 1 || value != strconv.FormatInt(n, 10) {
		return 0, fmt.Errorf("strictjson tag %q: maxItems must be a whole number from 1 to %d", tag, 1<<31-1)
	}
	return int(n), nil
}

// tagPunctuation is what a json tag name may hold besides letters and digits.
const tagPunctuation = "!#$%&()*+-./:;<=>?@[]^_{|}~ "

// validName reports whether a json tag name is used as given: encoding/json
// ignores names that are empty or hold a character other than a letter, a
// digit, or punctuation other than quote, backslash and comma.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			continue
		}
		if !strings.ContainsRune(tagPunctuation, r) {
			return false
		}
	}
	return true
}
