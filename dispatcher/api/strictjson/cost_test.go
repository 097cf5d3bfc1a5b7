package strictjson

import (
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maxBody is the largest body the API reads (dispatcher.MaxBatchBytes).
const maxBody = 1 << 20

// costBody is a body built to be expensive, and what it is decoded into.
type costBody struct {
	name string
	body []byte
	into func() any
}

// fill repeats unit(i) between head and tail, separated by commas, as many
// times as fits in maxBody.
func fill(head, tail string, unit func(i int) string) []byte {
	var b strings.Builder
	b.WriteString(head)
	for i := 0; ; i++ {
		u := unit(i)
		if b.Len()+len(u)+1+len(tail) > maxBody {
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(u)
	}
	b.WriteString(tail)
	return []byte(b.String())
}

// caseVariant spells "abcdefghijklmnopqrst" with upper case letters where
// the bits of i are set, a 'k' bit giving the Kelvin sign: keys that
// encoding/json folds together.
func caseVariant(i int) string {
	var b strings.Builder
	for j, c := range "abcdefghijklmnopqrst" {
		switch {
		case i>>j&1 == 0:
			b.WriteRune(c)
		case c == 'k':
			b.WriteRune('\u212a')
		default:
			b.WriteRune(c - 'a' + 'A')
		}
	}
	return b.String()
}

// ordinaryBody is what a busy client sends: generations, one after another.
func ordinaryBody() costBody {
	return costBody{"ordinary", fill(`{"a":"x","gens":[`, `]}`, func(int) string { return gen }), newMixed}
}

// worstBodies are the most expensive bodies of at most maxBody bytes that
// could be found for each kind of cost, accepted or not.
func worstBodies() []costBody {
	deepArrays := strings.Repeat("[", MaxDepth-3) + "0" + strings.Repeat("]", MaxDepth-3)
	deepObjects := strings.Repeat(`{"a":`, MaxDepth-3) + "0" + strings.Repeat("}", MaxDepth-3)
	escaped := strings.Repeat(`\u00e9`, maxBody/6-10)
	return []costBody{
		{"wide map", fill(`{"b":{`, `}}`, func(i int) string { return `"` + strconv.FormatInt(int64(i), 36) + `":0` }), newMixed},
		{"wide map, repeat at the end", fill(`{"b":{`, `,"0":0}}`, func(i int) string { return `"` + strconv.FormatInt(int64(i), 36) + `":0` }), newMixed},
		{"case variants in a map", fill(`{"b":{`, `}}`, func(i int) string { return `"` + caseVariant(i) + `":0` }), newMixed},
		{"case variants in a struct", fill(`{"generation":{`, `}}`, func(i int) string { return `"` + caseVariant(i) + `":0` }), newDelivery},
		{"unknown keys in a struct", fill(`{"generation":{`, `}}`, func(i int) string { return `"` + strconv.Itoa(i) + `":0` }), newDelivery},
		{"empty objects", fill(`{"b":{"x":[`, `]}}`, func(int) string { return `{}` }), newMixed},
		{"one-key objects", fill(`{"b":{"x":[`, `]}}`, func(int) string { return `{"a":0}` }), newMixed},
		{"one-field structs", fill(`{"gens":[`, `]}`, func(int) string { return `{"id":""}` }), newMixed},
		{"arrays nested to the limit", fill(`{"b":{"x":[`, `]}}`, func(int) string { return deepArrays }), newMixed},
		{"objects nested to the limit", fill(`{"b":{"x":[`, `]}}`, func(int) string { return deepObjects }), newMixed},
		{"long escaped string", []byte(`{"b":{"x":"` + escaped + `"}}`), newMixed},
		{"long escaped key", []byte(`{"b":{"` + escaped + `":0}}`), newMixed},
		{"escaped keys", fill(`{"b":{`, `}}`, func(i int) string { return `"\u00e9` + strconv.FormatInt(int64(i), 36) + `":0` }), newMixed},
		{"numbers", fill(`{"b":{"x":[`, `]}}`, func(int) string { return `-1.5e-7` }), newMixed},
		{"empty strings", fill(`{"b":{"x":[`, `]}}`, func(int) string { return `""` }), newMixed},
		// Refused for its length (envelope's maxItems, as the API's), after
		// the check and before any item is decoded.
		{"raw items", fill(`{"deliveries":[`, `]}`, func(int) string { return `0` }), newEnvelope},
		// The most raw items that are decoded, filling the body.
		{"raw items at the limit", rawAtLimit(), newEnvelope},
		{"raw items nested deep", fill(`{"deliveries":[`, `]}`, func(int) string {
			return strings.Repeat("[", maxRawDepth-2) + strings.Repeat("]", maxRawDepth-2)
		}), newEnvelope},
		{"raw items with repeated keys", fill(`{"deliveries":[{`, `}]}`, func(int) string { return `"a":0` }), newEnvelope},
	}
}

// rawAtLimit is a batch envelope of batchLimit strings, as long as fits in
// maxBody.
func rawAtLimit() []byte {
	each := (maxBody-len(`{"deliveries":[]}`))/batchLimit - len(`"",`)
	item := `"` + strings.Repeat("x", each) + `"`
	return []byte(`{"deliveries":[` + strings.TrimSuffix(strings.Repeat(item+",", batchLimit), ",") + `]}`)
}

// cpuTime is the CPU time this process has used, garbage collection
// included: unlike the wall clock, it does not grow while other programs
// have the processor.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// decodeCost is the CPU time of one Decode call, from a collected heap.
func decodeCost(tb testing.TB, c costBody) time.Duration {
	tb.Helper()
	v := c.into()
	runtime.GC()
	start := cpuTime(tb)
	_ = Decode(c.body, v)
	return cpuTime(tb) - start
}

// costRatio is c's cost per byte over base's, each the least of several
// runs taken in turn, so that a busy spell of the machine slows both.
func costRatio(tb testing.TB, c, base costBody) float64 {
	tb.Helper()
	bestC, bestBase := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for range costRuns {
		bestBase = min(bestBase, decodeCost(tb, base))
		bestC = min(bestC, decodeCost(tb, c))
	}
	return float64(bestC) / float64(len(c.body)) / (float64(max(bestBase, 1)) / float64(len(base.body)))
}

// maxCostRatio bounds a worst body's cost per byte over an ordinary body's.
// Linear work gives a small constant (at most about 7 here, mostly the
// allocations of encoding/json); the quadratic key check this package
// replaced gave over 1000 for "wide map".
const maxCostRatio = 20

// TestDecodeCostLinear: no body of at most maxBody bytes costs much more to
// decode, per byte, than an ordinary one. It compares CPU times measured in
// turn in the same run, never an absolute time.
func TestDecodeCostLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes about 200 MiB; skipped with -short")
	}
	base := ordinaryBody()
	for _, c := range worstBodies() {
		t.Run(c.name, func(t *testing.T) {
			if len(c.body) > maxBody {
				t.Fatalf("body of %d bytes, over %d", len(c.body), maxBody)
			}
			ratio := costRatio(t, c, base)
			t.Logf("%d bytes, %.2fx the ordinary cost per byte", len(c.body), ratio)
			if ratio > maxCostRatio {
				t.Errorf("costs %.1fx an ordinary body per byte, want at most %d", ratio, maxCostRatio)
			}
		})
	}
}

// TestCheckAllocs: the check allocates nothing for structs (its scratch is
// reused) and one key string per map key, so its allocations grow at most
// linearly with the body, whatever its shape.
func TestCheckAllocs(t *testing.T) {
	for _, c := range append(worstBodies(), ordinaryBody()) {
		n := schemaOf(reflect.TypeOf(c.into()).Elem())
		allocs := testing.AllocsPerRun(3, func() { _ = check(c.body, n) })
		// Bound: a string per map key, the set's growth, an error message.
		keys := strings.Count(string(c.body), ":")
		limit := float64(keys + keys/16 + 64)
		if c.name == "ordinary" || strings.HasPrefix(c.name, "raw items") || strings.Contains(c.name, "struct") {
			// Struct keys and raw values need none; an error needs a few, and
			// so does a fresh scanner when sync.Pool drops one (as under -race).
			limit = 32
		}
		if allocs > limit {
			t.Errorf("%s: %v allocations, want at most %v", c.name, allocs, limit)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range append([]costBody{ordinaryBody()}, worstBodies()...) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				_ = Decode(c.body, c.into())
			}
		})
	}
}

// BenchmarkDecodeDelivery is the common request: one delivery.
func BenchmarkDecodeDelivery(b *testing.B) {
	body := []byte(delivery(gen))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var req deliveryRequest
		if err := Decode(body, &req); err != nil {
			b.Fatal(fmt.Errorf("decode: %w", err))
		}
	}
}
