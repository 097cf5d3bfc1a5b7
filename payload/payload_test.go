package payload

import (
	"bytes"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func ptr(s string) *string { return &s }

func valid(typ string) Generation {
	g := Generation{
		ID:        "507f1f77bcf86cd799439011",
		Tool:      "create-" + typ,
		Type:      typ,
		Output:    "https://files.artificialstudio.ai/generations/abc123?sig=a&b=<c>",
		Thumbnail: ptr("https://files.artificialstudio.ai/thumbnails/abc123.jpg"),
		CreatedAt: "2024-01-15T10:30:00Z",
	}
	if typ == "audio" {
		g.Thumbnail = nil
	}
	return g
}

// TestEncodeGolden pins the exact body bytes for every media type.
func TestEncodeGolden(t *testing.T) {
	for _, typ := range Types {
		t.Run(typ, func(t *testing.T) {
			g, err := Normalize(valid(typ))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Encode(g)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", typ+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestEncodeDocumentedExample(t *testing.T) {
	g, err := Normalize(Generation{
		ID: "507f1f77bcf86cd799439011", Status: "success", Tool: "create-image", Type: "image",
		Output:    "https://files.artificialstudio.ai/generations/abc123.png",
		Thumbnail: ptr("https://files.artificialstudio.ai/thumbnails/abc123.jpg"),
		CreatedAt: "2024-01-15T10:30:00.000Z",
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := Encode(g)
	want := `{"id":"507f1f77bcf86cd799439011","status":"success","tool":"create-image","type":"image","output":"https://files.artificialstudio.ai/generations/abc123.png","thumbnail":"https://files.artificialstudio.ai/thumbnails/abc123.jpg","createdAt":"2024-01-15T10:30:00.000Z"}`
	if string(got) != want {
		t.Errorf("body =\n%s\nwant\n%s", got, want)
	}
}

func TestNormalizeCreatedAt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2024-01-15T10:30:00Z", "2024-01-15T10:30:00.000Z"},
		{"2024-01-15T10:30:00.000Z", "2024-01-15T10:30:00.000Z"},
		{"2024-01-15T10:30:00.123456789Z", "2024-01-15T10:30:00.123Z"},
		{"2024-01-15T12:30:00.5+02:00", "2024-01-15T10:30:00.500Z"},
		{"2024-01-15T05:30:00-05:00", "2024-01-15T10:30:00.000Z"},
	}
	for _, tt := range tests {
		g := valid("image")
		g.CreatedAt = tt.in
		got, err := Normalize(g)
		if err != nil || got.CreatedAt != tt.want {
			t.Errorf("Normalize(createdAt %q) = %q, %v; want %q", tt.in, got.CreatedAt, err, tt.want)
		}
	}
}

func TestNormalizeDefaultsStatus(t *testing.T) {
	g := valid("video")
	g.Status = ""
	got, err := Normalize(g)
	if err != nil || got.Status != "success" {
		t.Errorf("status = %q, %v; want success", got.Status, err)
	}
}

func TestNormalizeRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Generation)
		field  string
	}{
		{"missing id", func(g *Generation) { g.ID = "" }, "id"},
		{"id too long", func(g *Generation) { g.ID = strings.Repeat("a", 129) }, "id"},
		{"id CRLF", func(g *Generation) { g.ID = "abc\r\nX-Evil: 1" }, "id"},
		{"id space", func(g *Generation) { g.ID = "abc def" }, "id"},
		{"id tab", func(g *Generation) { g.ID = "abc\tdef" }, "id"},
		{"id NUL", func(g *Generation) { g.ID = "abc\x00" }, "id"},
		{"id slash", func(g *Generation) { g.ID = "a/b" }, "id"},
		{"id unicode space", func(g *Generation) { g.ID = "a\u00a0b" }, "id"},
		// Dot segments: a client or ServeMux turns /v1/deliveries/.. into
		// /v1/, so GET /v1/deliveries/{id} could never read them back.
		{"id dot", func(g *Generation) { g.ID = "." }, "id"},
		{"id dot dot", func(g *Generation) { g.ID = ".." }, "id"},
		{"status failed", func(g *Generation) { g.Status = "failed" }, "status"},
		{"status case", func(g *Generation) { g.Status = "Success" }, "status"},
		{"missing tool", func(g *Generation) { g.Tool = "" }, "tool"},
		{"tool control", func(g *Generation) { g.Tool = "create\nimage" }, "tool"},
		{"tool replacement char", func(g *Generation) { g.Tool = "create-\ufffd" }, "tool"},
		{"missing type", func(g *Generation) { g.Type = "" }, "type"},
		{"unknown type", func(g *Generation) { g.Type = "hologram" }, "type"},
		{"type case", func(g *Generation) { g.Type = "Image" }, "type"},
		{"missing output", func(g *Generation) { g.Output = "" }, "output"},
		{"relative output", func(g *Generation) { g.Output = "/generations/abc.png" }, "output"},
		{"ftp output", func(g *Generation) { g.Output = "ftp://files.example.com/a.png" }, "output"},
		{"javascript output", func(g *Generation) { g.Output = "javascript:alert(1)" }, "output"},
		{"hostless output", func(g *Generation) { g.Output = "https:///a.png" }, "output"},
		{"output with space", func(g *Generation) { g.Output = "https://files.example.com/a b.png" }, "output"},
		{"bad thumbnail", func(g *Generation) { g.Thumbnail = ptr("thumb.jpg") }, "thumbnail"},
		{"empty thumbnail", func(g *Generation) { g.Thumbnail = ptr("") }, "thumbnail"},
		{"audio thumbnail", func(g *Generation) { g.Type = "audio" }, "thumbnail"},
		{"missing createdAt", func(g *Generation) { g.CreatedAt = "" }, "createdAt"},
		{"createdAt no zone", func(g *Generation) { g.CreatedAt = "2024-01-15T10:30:00" }, "createdAt"},
		{"createdAt date only", func(g *Generation) { g.CreatedAt = "2024-01-15" }, "createdAt"},
		{"createdAt garbage", func(g *Generation) { g.CreatedAt = "yesterday" }, "createdAt"},
		{"createdAt month 13", func(g *Generation) { g.CreatedAt = "2024-13-15T10:30:00Z" }, "createdAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := valid("image")
			tt.mutate(&g)
			_, err := Normalize(g)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Normalize = %v, want ErrInvalid", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != tt.field {
				t.Fatalf("Normalize = %v, want exactly one error naming %q", err, tt.field)
			}
		})
	}
}

// Dots are fine anywhere else in an id.
func TestNormalizeAcceptsDottedIDs(t *testing.T) {
	for _, id := range []string{"...", ".a", "a.", "a..b", "..a", "a..", "v1.2.3", "._.", ".-"} {
		g := valid("image")
		g.ID = id
		if _, err := Normalize(g); err != nil {
			t.Errorf("Normalize(id %q) = %v, want nil", id, err)
		}
	}
}

func TestNormalizeListsEveryField(t *testing.T) {
	_, err := Normalize(Generation{Thumbnail: ptr("x")})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	var fields []string
	for _, f := range ve.Fields {
		fields = append(fields, f.Field)
	}
	if got, want := strings.Join(fields, ","), "id,tool,type,output,thumbnail,createdAt"; got != want {
		t.Errorf("fields = %s, want %s", got, want)
	}
}

func TestSetHeaders(t *testing.T) {
	h := http.Header{}
	SetHeaders(h, "507f1f77bcf86cd799439011", UserAgent("1.2.3"))
	want := map[string]string{
		"Content-Type":     "application/json",
		"X-Webhook-Source": "artificial-studio",
		"X-Media-Id":       "507f1f77bcf86cd799439011",
		"User-Agent":       "artificial-studio-webhooks/1.2.3",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers = %v, want exactly %d", h, len(want))
	}
	if UserAgent("") != "artificial-studio-webhooks/dev" {
		t.Errorf("UserAgent(\"\") = %q", UserAgent(""))
	}
}
