package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api/strictjson"
)

func TestDecodeStrict(t *testing.T) {
	type req struct {
		A string         `json:"a"`
		B map[string]any `json:"b"`
	}
	tests := []struct {
		name, body, wantErr string
	}{
		{"ok", `{"a":"x","b":{"c":[1,{"d":2}]}}`, ""},
		{"duplicate key", `{"a":"x","a":"y"}`, "duplicate key"},
		{"nested duplicate", `{"a":"x","b":{"c":1,"c":2}}`, "duplicate key"},
		{"same key in sibling objects", `{"b":{"c":{"k":1},"d":{"k":2}}}`, ""},
		{"unknown field", `{"z":1}`, "unknown field"},
		{"wrong type", `{"a":5}`, "a must be a string"},
		{"huge number", `{"a":1e999999}`, "a must be a string"},
		{"truncated", `{"a":"x"`, "unexpected end"},
		{"trailing data", `{"a":"x"} {}`, "after the JSON value"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"deep", strings.Repeat(`{"b":`, 40) + "1" + strings.Repeat("}", 40), "deeper than"},
		{"empty", ``, "unexpected end"},
		{"not an object", `[]`, "must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v req
			err := strictjson.Decode([]byte(tt.body), &v)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decodeStrict = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, strictjson.ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decodeStrict = %v, want malformed mentioning %q", err, tt.wantErr)
			}
		})
	}
}
