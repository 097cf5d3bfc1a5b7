package urlguard

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/publicsuffix"
)

// FuzzCheckURL checks that CheckURL never panics, that every refusal carries
// ErrForbidden and exactly one reason, and that whatever it accepts is safe
// by an independent reading: net/url, and a loose inet_aton-style IPv4
// parser that reads what C resolvers and some URL parsers would.
// Seeds live in testdata/fuzz/FuzzCheckURL.
func FuzzCheckURL(f *testing.F) {
	for _, tt := range checkURLTests {
		f.Add(tt.url)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := CheckURL(raw)
		if err != nil {
			if !errors.Is(err, ErrForbidden) || countReasons(err) != 1 {
				t.Fatalf("CheckURL(%q) = %v: want ErrForbidden and exactly one reason", raw, err)
			}
			return
		}
		if len(raw) > MaxURLLen {
			t.Fatalf("accepted %d bytes", len(raw))
		}
		for i := 0; i < len(raw); i++ {
			if c := raw[i]; c < 0x20 || c >= 0x7f || c == ' ' || c == '\\' {
				t.Fatalf("accepted %q with byte %#x", raw, c)
			}
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted %q, which net/url refuses: %v", raw, err)
		}
		if u.Scheme != "https" || u.User != nil || u.Opaque != "" || u.Host == "" {
			t.Fatalf("accepted %q: scheme %q, user %v, opaque %q, host %q", raw, u.Scheme, u.User, u.Opaque, u.Host)
		}
		host := u.Hostname()
		if strings.ContainsAny(host, "%@[]") {
			t.Fatalf("accepted %q with host %q", raw, host)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if e := CheckAddr(ip); e != nil {
				t.Fatalf("accepted %q with refused IP %s: %v", raw, ip, e)
			}
			if ip.Zone() != "" {
				t.Fatalf("accepted %q with zone", raw)
			}
		} else if ip, ok := looseIPv4(host); ok {
			// Readable as an IPv4 address, yet not the canonical literal.
			t.Fatalf("accepted %q, whose host reads as %s under inet_aton", raw, ip)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				t.Fatalf("accepted %q with port %q", raw, p)
			}
		}
		name := strings.ToLower(strings.TrimSuffix(host, "."))
		if name == "localhost" || strings.HasSuffix(name, ".localhost") || !strings.Contains(name, ".") && !strings.Contains(name, ":") {
			t.Fatalf("accepted %q with internal name %q", raw, host)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			// A name: below a public suffix, never one itself, and never
			// one that only the list's implicit "*" rule matches.
			suffix, icann := publicsuffix.PublicSuffix(name)
			if icann && suffix == name {
				t.Fatalf("accepted %q, whose host is the public suffix %q", raw, suffix)
			}
			if !icann && !strings.Contains(suffix, ".") {
				t.Fatalf("accepted %q, whose host is under no public suffix", raw)
			}
		}
		if _, err := DestinationKey(raw); err != nil {
			t.Fatalf("accepted %q, which has no destination key: %v", raw, err)
		}
	})
}

// FuzzDestinationKey checks that DestinationKey never panics, that its
// errors are ErrDestinationKey and never refusals, and that a key is a
// canonical host:port: lower-case ASCII, no trailing dot, a decimal port
// without leading zero, and its own key when read back as a URL.
// Seeds live in testdata/fuzz/FuzzDestinationKey.
func FuzzDestinationKey(f *testing.F) {
	for _, d := range destinationSpellings {
		for _, u := range d.urls {
			f.Add(u)
		}
	}
	for _, tt := range checkURLTests {
		f.Add(tt.url)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key, err := DestinationKey(raw)
		if err != nil {
			if !errors.Is(err, ErrDestinationKey) || errors.Is(err, ErrForbidden) {
				t.Fatalf("DestinationKey(%q) = %v: want ErrDestinationKey only", raw, err)
			}
			return
		}
		host, port, err := net.SplitHostPort(key)
		if err != nil {
			t.Fatalf("DestinationKey(%q) = %q, not host:port: %v", raw, key, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			t.Fatalf("DestinationKey(%q) = %q: port %q", raw, key, port)
		}
		if host == "" || strings.HasSuffix(host, ".") || strings.ToLower(host) != host || !isASCII(host) {
			t.Fatalf("DestinationKey(%q) = %q: host %q is not canonical", raw, key, host)
		}
		if ip, err := netip.ParseAddr(host); err == nil && (ip.Zone() != "" || ip.Is4In6() || ip.String() != host) {
			t.Fatalf("DestinationKey(%q) = %q: IP %q is not canonical", raw, key, host)
		}
		again, err := DestinationKey("https://" + key + "/")
		if err != nil || again != key {
			t.Fatalf("DestinationKey(%q) = %q, but the key read back as a URL gives %q, %v", raw, key, again, err)
		}
	})
}

// looseIPv4 parses s as inet_aton(3) does, and WHATWG nearly so: one to four
// dot-separated parts, each decimal, octal (leading 0) or hex (0x), the last
// filling the remaining bytes; a single trailing dot is ignored.
func looseIPv4(s string) (netip.Addr, bool) {
	s = strings.TrimSuffix(s, ".")
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var nums []uint64
	for _, p := range parts {
		base := 10
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0" // WHATWG reads a bare 0x as zero
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil || p == "" || p[0] == '+' || p[0] == '-' {
			return netip.Addr{}, false
		}
		nums = append(nums, n)
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func TestLooseIPv4(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1"}, {"127.1", "127.0.0.1"}, {"2130706433", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"}, {"0177.0.0.1", "127.0.0.1"}, {"0x7f000001", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"}, {"10.1", "10.0.0.1"}, {"0127.0.0.1", "87.0.0.1"},
		{"example.com", ""}, {"1.2.3.4.5", ""}, {"256.1.1.1", ""}, {"08.1.1.1", ""},
	}
	for _, tt := range tests {
		ip, ok := looseIPv4(tt.in)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != tt.want {
			t.Errorf("looseIPv4(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzCheckAddr checks CheckAddr against the standard library's own
// classification and against itself: the mapped form and a zone never change
// the answer. Seeds live in testdata/fuzz/FuzzCheckAddr.
func FuzzCheckAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "8.8.8.8", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2001:4860:4860::8888", "fe80::1"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		err := CheckAddr(ip)
		if err != nil && (!errors.Is(err, ErrAddress) || !errors.Is(err, ErrForbidden)) {
			t.Fatalf("CheckAddr(%s) = %v: want ErrAddress", ip, err)
		}
		if ip.Is6() {
			if z := CheckAddr(ip.WithZone("eth0")); (z == nil) != (err == nil) {
				t.Fatalf("zone changes the answer for %s: %v vs %v", ip, err, z)
			}
		}
		if m := CheckAddr(ip.Unmap()); (m == nil) != (err == nil) {
			t.Fatalf("unmapping changes the answer for %s: %v vs %v", ip, err, m)
		}
		if err != nil {
			return
		}
		// Accepted: whatever IPv4 it carries, or itself, must be public
		// to the standard library too.
		eff := ip.Unmap()
		if a := eff.As16(); eff.Is6() && (wellKnown.Contains(eff) || compat4.Contains(eff)) {
			eff = netip.AddrFrom4([4]byte(a[12:]))
		}
		if !eff.IsGlobalUnicast() || eff.IsPrivate() || eff.IsLoopback() || eff.IsLinkLocalUnicast() {
			t.Fatalf("CheckAddr(%s) accepted %s, which the standard library calls non-public", ip, eff)
		}
		if eff.Is6() && !globalUnicast6.Contains(eff) {
			t.Fatalf("CheckAddr(%s) accepted an address outside 2000::/3", ip)
		}
	})
}
