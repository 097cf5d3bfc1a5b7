package strictjson

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner checks one body against a node in a single pass: syntax, keys,
// repeats and depth. It never looks back more than the current key, so the
// work per byte is constant, and it keeps its scratch space between objects
// and, through scanners, between calls.
type scanner struct {
	data   []byte
	pos    int
	levels [MaxDepth + 1]level // levels[d] serves the open container at depth d
	raw    []bool              // containers open inside a json.RawMessage (true for objects), at most maxRawDepth
	// tooMany is the first list found longer than its maxItems, returned
	// once the rest of the body has passed the check.
	tooMany *TooManyItemsError
}

// level is the scratch space of one nesting depth.
type level struct {
	object bool
	key    span                // the key being read or whose value is being read
	seen   []uint64            // struct objects: a bit per field already given
	keys   map[string]struct{} // other objects: keys already given
	buf    []byte              // the unescaped key, when it has escapes
}

// span is data[start:end], the inside of a quoted string.
type span struct{ start, end int }

// Scratch kept for the next object or call is bounded: an object with more
// keys than this gets a fresh set (clearing a big set would cost its size for
// every later small object), and larger buffers are dropped after a call.
const (
	maxKeptKeys  = 64
	maxKeptBytes = 4 << 10
)

var scanners = sync.Pool{New: func() any { return new(scanner) }}

// release returns s to scanners without large scratch or the body.
func (s *scanner) release() {
	s.data, s.pos, s.tooMany = nil, 0, nil
	for i := range s.levels {
		lv := &s.levels[i]
		if len(lv.keys) > maxKeptKeys {
			lv.keys = nil
		}
		if cap(lv.buf) > maxKeptBytes {
			lv.buf = nil
		}
	}
	scanners.Put(s)
}

// document checks the whole body: one value for n, then only white space.
func (s *scanner) document(n *node) error {
	if err := s.value(n, 0); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos < len(s.data) {
		return fmt.Errorf("%w: unexpected data after the JSON value", ErrMalformed)
	}
	if s.tooMany != nil {
		return s.tooMany
	}
	return nil
}

// value checks the value at s.pos for n; the enclosing container is at depth.
func (s *scanner) value(n *node, depth int) error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return s.errEnd()
	}
	if n.kind == kindRaw {
		return s.skipRaw(depth)
	}
	switch s.data[s.pos] {
	case '{':
		return s.object(n, depth+1)
	case '[':
		return s.array(n, depth+1)
	case '"':
		_, _, err := s.str()
		return err
	default:
		return s.scalar()
	}
}

// object checks the object at s.pos, which sits at depth.
func (s *scanner) object(n *node, depth int) error {
	if depth > MaxDepth {
		return s.errDeep(MaxDepth)
	}
	lv := &s.levels[depth]
	lv.object = true
	if n.kind == kindStruct {
		words := (len(n.next) + 63) / 64
		if cap(lv.seen) < words {
			lv.seen = make([]uint64, words)
		}
		lv.seen = lv.seen[:words]
		clear(lv.seen)
	} else if len(lv.keys) > maxKeptKeys {
		lv.keys = nil
	} else {
		clear(lv.keys)
	}
	s.pos++ // {
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errEnd()
		}
		if s.data[s.pos] != '"' {
			return s.errChar("looking for an object key")
		}
		start, end, err := s.str()
		if err != nil {
			return err
		}
		lv.key = span{start, end}
		key := s.data[start:end]
		if s.escaped(lv.key) {
			lv.buf = unescape(lv.buf[:0], key)
			key = lv.buf
		}
		var child *node
		switch n.kind {
		case kindStruct:
			i, ok := n.fields[string(key)]
			if !ok {
				return s.errKey("unknown field", depth)
			}
			if lv.seen[i/64]&(1<<(i%64)) != 0 {
				return s.errKey("duplicate key", depth)
			}
			lv.seen[i/64] |= 1 << (i % 64)
			child = n.next[i]
		default:
			if _, dup := lv.keys[string(key)]; dup {
				return s.errKey("duplicate key", depth)
			}
			if lv.keys == nil {
				lv.keys = make(map[string]struct{})
			}
			lv.keys[string(key)] = struct{}{}
			child = anyNode
			if n.kind == kindMap {
				child = n.elem
			}
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errEnd()
		}
		if s.data[s.pos] != ':' {
			return s.errChar("after an object key")
		}
		s.pos++
		if err := s.value(child, depth); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errEnd()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.errChar("after an object value")
		}
	}
}

// array checks the array at s.pos, which sits at depth.
func (s *scanner) array(n *node, depth int) error {
	if depth > MaxDepth {
		return s.errDeep(MaxDepth)
	}
	s.levels[depth].object = false
	child := anyNode
	if n.kind == kindList {
		child = n.elem
	}
	s.pos++ // [
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return nil
	}
	// Elements past n.maxItems are still checked, so that a malformed body
	// is refused as malformed whatever its length, and counted.
	var over *TooManyItemsError
	for items := 1; ; items++ {
		if n.maxItems > 0 && items == n.maxItems+1 && s.tooMany == nil {
			over = &TooManyItemsError{Field: s.path(depth - 1), Limit: n.maxItems}
			s.tooMany = over
		}
		if err := s.value(child, depth); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errEnd()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			if over != nil {
				over.Items = items
			}
			return nil
		default:
			return s.errChar("after an array element")
		}
	}
}

// skipRaw checks the syntax of the value at s.pos, inside a container at
// depth, without looking at its keys: it is a json.RawMessage. It loops
// instead of recursing, as nesting here is not bounded by MaxDepth.
func (s *scanner) skipRaw(depth int) error {
	s.raw = s.raw[:0]
	for {
		// A value starts at s.pos, after white space.
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errEnd()
		}
		closed := true
		switch c := s.data[s.pos]; c {
		case '{', '[':
			if depth+len(s.raw)+1 > maxRawDepth {
				return s.errDeep(maxRawDepth)
			}
			s.pos++
			s.skipSpace()
			if s.pos < len(s.data) && (c == '{' && s.data[s.pos] == '}' || c == '[' && s.data[s.pos] == ']') {
				s.pos++
				break
			}
			s.raw = append(s.raw, c == '{')
			if c == '{' {
				if err := s.rawKey(); err != nil {
					return err
				}
			}
			closed = false
		case '"':
			if _, _, err := s.str(); err != nil {
				return err
			}
		default:
			if err := s.scalar(); err != nil {
				return err
			}
		}
		// After a value: close what ends here, then stop or go on to the
		// next element or member.
		for closed {
			if len(s.raw) == 0 {
				return nil
			}
			s.skipSpace()
			if s.pos >= len(s.data) {
				return s.errEnd()
			}
			inObject := s.raw[len(s.raw)-1]
			switch c := s.data[s.pos]; {
			case c == ',':
				s.pos++
				if inObject {
					if err := s.rawKey(); err != nil {
						return err
					}
				}
				closed = false
			case c == '}' && inObject, c == ']' && !inObject:
				s.pos++
				s.raw = s.raw[:len(s.raw)-1]
			case inObject:
				return s.errChar("after an object value")
			default:
				return s.errChar("after an array element")
			}
		}
	}
}

// rawKey checks an object key and its colon inside a json.RawMessage.
func (s *scanner) rawKey() error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return s.errEnd()
	}
	if s.data[s.pos] != '"' {
		return s.errChar("looking for an object key")
	}
	if _, _, err := s.str(); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos >= len(s.data) {
		return s.errEnd()
	}
	if s.data[s.pos] != ':' {
		return s.errChar("after an object key")
	}
	s.pos++
	return nil
}

// str checks the string at s.pos and returns where its inside starts and ends.
func (s *scanner) str() (start, end int, err error) {
	s.pos++ // "
	start = s.pos
	for s.pos < len(s.data) {
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			return start, s.pos - 1, nil
		case c == '\\':
			if s.pos+1 >= len(s.data) {
				return 0, 0, s.errEnd()
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				s.pos += 2
				for range 4 {
					if s.pos >= len(s.data) {
						return 0, 0, s.errEnd()
					}
					if !isHex(s.data[s.pos]) {
						return 0, 0, s.errChar("in a \\u escape")
					}
					s.pos++
				}
			default:
				s.pos++
				return 0, 0, s.errChar("in a string escape")
			}
		case c < 0x20:
			return 0, 0, s.errChar("in a string")
		default:
			s.pos++
		}
	}
	return 0, 0, s.errEnd()
}

// escaped reports whether the string inside sp holds a backslash.
func (s *scanner) escaped(sp span) bool {
	for _, c := range s.data[sp.start:sp.end] {
		if c == '\\' {
			return true
		}
	}
	return false
}

// scalar checks the literal or number at s.pos.
func (s *scanner) scalar() error {
	for _, lit := range [...]string{"true", "false", "null"} {
		if s.data[s.pos] != lit[0] {
			continue
		}
		for i := range len(lit) {
			if s.pos >= len(s.data) {
				return s.errEnd()
			}
			if s.data[s.pos] != lit[i] {
				return s.errChar("in a literal")
			}
			s.pos++
		}
		return nil
	}
	return s.number()
}

// number checks the number at s.pos: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos >= len(s.data):
		return s.errEnd()
	case s.data[s.pos] == '0':
		s.pos++
	case isDigit(s.data[s.pos]):
		s.digits()
	default:
		return s.errChar("looking for a value")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if err := s.someDigits("after a decimal point"); err != nil {
			return err
		}
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if err := s.someDigits("in an exponent"); err != nil {
			return err
		}
	}
	return nil
}

// someDigits consumes one or more digits.
func (s *scanner) someDigits(where string) error {
	if s.pos >= len(s.data) {
		return s.errEnd()
	}
	if !isDigit(s.data[s.pos]) {
		return s.errChar(where)
	}
	s.digits()
	return nil
}

func (s *scanner) digits() {
	for s.pos < len(s.data) && isDigit(s.data[s.pos]) {
		s.pos++
	}
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// unescape appends the string that the inside of a JSON string stands for,
// as encoding/json reads it: a \u escape of a surrogate that is not half of a
// pair becomes U+FFFD. The escapes must have been checked by str.
func unescape(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch src[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(src[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				pair := utf8.RuneError
				if i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
					pair = utf16.DecodeRune(r, hex4(src[i+2:]))
				}
				if pair == utf8.RuneError {
					r = utf8.RuneError // the next escape stands on its own
				} else {
					r = pair
					i += 6
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // " \ /
			dst = append(dst, src[i+1])
		}
		i += 2
	}
	return dst
}

// hex4 reads four checked hex digits.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			r = r<<4 | rune(c-'a'+10)
		}
	}
	return r
}

func (s *scanner) errEnd() error {
	return fmt.Errorf("%w: unexpected end of JSON", ErrMalformed)
}

func (s *scanner) errDeep(limit int) error {
	return fmt.Errorf("%w: nested deeper than %d levels", ErrMalformed, limit)
}

// errChar reports the character at s.pos.
func (s *scanner) errChar(where string) error {
	r, _ := utf8.DecodeRune(s.data[s.pos:])
	return fmt.Errorf("%w: invalid character %s %s at byte %d", ErrMalformed, strconv.QuoteRune(r), where, s.pos)
}

// errKey reports the key just read by the object at depth, with the keys
// that lead to it: `unknown field "generation.Id"`.
func (s *scanner) errKey(problem string, depth int) error {
	return fmt.Errorf("%w: %s %s", ErrMalformed, problem, strconv.Quote(s.path(depth)))
}

// path is the keys that lead to the value being read in the containers
// open at depths 1 to depth, joined with dots: "generation.id".
func (s *scanner) path(depth int) string {
	var path []string
	for d := 1; d <= depth; d++ {
		if lv := &s.levels[d]; lv.object {
			path = append(path, clip(string(unescape(nil, s.data[lv.key.start:lv.key.end]))))
		}
	}
	return strings.Join(path, ".")
}
