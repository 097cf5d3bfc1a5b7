package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzNormalize checks that Normalize never panics, that a refusal is a
// *ValidationError naming at least one field, and that what it accepts is
// what goes on the wire: Encode gives valid UTF-8 JSON that decodes back to
// the same Generation, Normalize is idempotent (so every retry, and every
// re-read of the stored body, sends the same bytes), createdAt reads back as
// RFC 3339, and the id is safe as the X-Media-Id header value.
// Seeds live in testdata/fuzz/FuzzNormalize.
func FuzzNormalize(f *testing.F) {
	f.Add("507f1f77bcf86cd799439011", "success", "create-image", "image",
		"https://files.artificialstudio.ai/a.png", "https://files.artificialstudio.ai/a.jpg", true, "2024-01-15T10:30:00Z")
	f.Fuzz(func(t *testing.T, id, status, tool, typ, output, thumbnail string, hasThumbnail bool, createdAt string) {
		in := Generation{ID: id, Status: status, Tool: tool, Type: typ, Output: output, CreatedAt: createdAt}
		if hasThumbnail {
			in.Thumbnail = &thumbnail
		}
		g, err := Normalize(in)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize(%+v) = %v: want a *ValidationError with fields", in, err)
			}
			return
		}
		body, err := Encode(g)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", g, err)
		}
		if !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("Encode gave invalid JSON %q", body)
		}
		var back Generation
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&back); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if !reflect.DeepEqual(back, g) {
			t.Fatalf("round trip changed the generation:\n%+v\n%+v", g, back)
		}
		again, err := Normalize(g)
		if err != nil {
			t.Fatalf("Normalize refuses its own output %s: %v", body, err)
		}
		if !reflect.DeepEqual(again, g) {
			t.Fatalf("Normalize is not idempotent: %+v -> %+v", g, again)
		}
		if _, err := time.Parse(time.RFC3339, g.CreatedAt); err != nil || len(g.CreatedAt) != len("2006-01-02T15:04:05.000Z") {
			t.Fatalf("createdAt %q is not the documented form: %v", g.CreatedAt, err)
		}
		if g.Status != StatusSuccess {
			t.Fatalf("status %q", g.Status)
		}
		if g.Type == "audio" && g.Thumbnail != nil {
			t.Fatalf("audio with thumbnail %q", *g.Thumbnail)
		}
		if len(g.ID) == 0 || len(g.ID) > MaxIDLength {
			t.Fatalf("id of %d bytes", len(g.ID))
		}
		if g.ID == "." || g.ID == ".." {
			t.Fatalf("id %q is a dot segment", g.ID)
		}
		for i := 0; i < len(g.ID); i++ {
			c := g.ID[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '~' || c == '-') {
				t.Fatalf("id %q has byte %#x", g.ID, c)
			}
		}
		// The header goes out exactly as set: nothing for net/http to refuse or fold.
		h := http.Header{}
		SetHeaders(h, g.ID, UserAgent("dev"))
		if got := h.Get(HeaderMediaID); got != g.ID {
			t.Fatalf("X-Media-Id reads back %q, want %q", got, g.ID)
		}
	})
}
