package dispatcher

import (
	"testing"
	"time"
)

func TestCanonicalHostAndMatch(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://Hooks.Example.com./x?y", "hooks.example.com"},
		{"https://hooks.example.com:8443/x", "hooks.example.com"},
		{"HOOKS.example.COM.", "hooks.example.com"},
		{"hooks.example.com:443", "hooks.example.com"},
		{"https://[2001:db8::1]:443/x", "2001:db8::1"},
		{"", ""},
	} {
		if got := CanonicalHost(tt.in); got != tt.want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	f := Filter{Host: "hooks.example.com."}
	if !f.MatchHost("https://HOOKS.example.com/a") || f.MatchHost("https://other.example.com/a") || f.MatchHost("https://hooks.example.com.evil.test/") {
		t.Error("MatchHost compares more or less than the host name")
	}
	if !(Filter{}).MatchHost("https://anything.example/") {
		t.Error("an empty host filter must match everything")
	}
	t0 := time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)
	f = Filter{Since: t0, Until: t0.Add(time.Hour)}
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{{t0.Add(-time.Millisecond), false}, {t0, true}, {t0.Add(59 * time.Minute), true}, {t0.Add(time.Hour), false}} {
		if got := f.MatchTime(tt.at); got != tt.want {
			t.Errorf("MatchTime(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
}
