package urlguard

import (
	"errors"
	"testing"
)

// destinationSpellings maps each key to spellings of that one destination.
var destinationSpellings = []struct {
	key  string
	urls []string
}{
	{"example.com:443", []string{
		"https://example.com",
		"https://example.com/",
		"https://example.com/hook?x=1#frag",
		"https://EXAMPLE.COM/hook",
		"HTTPS://Example.Com/hook",
		"https://example.com./",
		"https://EXAMPLE.COM.:443/",
		"https://example.com:443/",
		"https://example.com:0443/", // leading zero: the same port
		"https://example.com:/",     // empty port: the default
		"http://example.com:443/",   // the same socket; the scheme is not the key
		"https://slow.example.com/",
		"https://Slow.Example.com./",
		"https://a.slow.example.com/",
		"https://b.slow.example.com:443/",
		"https://_dmarc.example.com/", // underscore: DNS allows it, IDNA lookup does not
		"https://xn--ls8h.example.com/",
		"https://💩.example.com/", // IDN subdomain, converted to xn--ls8h
		"https://example。com/",   // ideographic full stop, mapped by IDNA
		"https://ｅｘａｍｐｌｅ.com/",   // full-width letters, mapped by IDNA
		"https://user:secret@example.com/",
	}},
	{"xn--bcher-kva.de:443", []string{
		"https://bücher.de/",
		"https://BÜCHER.DE./",
		"https://xn--bcher-kva.de/",
		"https://XN--BCHER-KVA.DE:443/",
		"https://www.bücher.de/",
		"https://shop.xn--bcher-kva.de./",
	}},
	{"example.co.uk:8443", []string{
		"https://example.co.uk:8443/",
		"https://a.b.example.co.uk:8443/",
		"https://EXAMPLE.CO.UK.:8443/",
	}},
	{"93.184.215.14:443", []string{
		"https://93.184.215.14/",
		"https://93.184.215.14:443/",
		"https://[::ffff:93.184.215.14]/",
		"https://[::ffff:5db8:d70e]:443/",
		"https://[0:0:0:0:0:ffff:93.184.215.14]/",
	}},
	{"[2606:4700::1111]:443", []string{
		"https://[2606:4700::1111]/",
		"https://[2606:4700:0:0:0:0:0:1111]:443/",
		"https://[2606:4700::1111%25eth0]/",
		"https://[2606:4700:0000::1111]/",
		"https://[2606:4700::1111]:0443/",
	}},
	{"example.com:80", []string{
		"http://example.com/",
		"http://www.example.com:80/",
		"https://example.com:80/",
	}},
	// The private section of the list keeps tenants apart.
	{"a.herokuapp.com:443", []string{"https://a.herokuapp.com/", "https://x.a.herokuapp.com/"}},
	// A public suffix itself keys as itself.
	{"herokuapp.com:443", []string{"https://herokuapp.com/", "https://HerokuApp.com./"}},
	{"co.uk:443", []string{"https://co.uk/"}},
	// Names under no rule: the implicit "*" rule.
	{"cluster.local:443", []string{"https://svc.cluster.local/", "https://redis.svc.cluster.local./"}},
	{"localhost:443", []string{"https://localhost/", "https://LOCALHOST./"}},
}

func TestDestinationKey(t *testing.T) {
	owner := map[string]string{} // key -> the first URL that produced it
	for _, d := range destinationSpellings {
		for _, raw := range d.urls {
			got, err := DestinationKey(raw)
			if err != nil || got != d.key {
				t.Errorf("DestinationKey(%q) = %q, %v; want %q", raw, got, err, d.key)
			}
		}
		if first, dup := owner[d.key]; dup {
			t.Errorf("test bug: key %q listed twice (%s)", d.key, first)
		}
		owner[d.key] = d.urls[0]
	}
}

// Distinct destinations never share a key.
func TestDestinationKeyDistinct(t *testing.T) {
	urls := []string{
		"https://example.com/",
		"https://example.com:8443/",
		"http://example.com/", // port 80
		"https://example.org/",
		"https://example.net/",
		"https://example.co.uk/",
		"https://other.co.uk/",
		"https://co.uk/",
		"https://a.herokuapp.com/",
		"https://b.herokuapp.com/",
		"https://herokuapp.com/",
		"https://abc.execute-api.us-east-1.amazonaws.com/",
		"https://def.execute-api.us-east-1.amazonaws.com/",
		"https://xn--bcher-kva.de/",
		"https://bucher.de/",
		"https://93.184.215.14/",
		"https://93.184.215.15/",
		"https://[2606:4700::1111]/",
		"https://[2606:4700::1112]/",
		"https://[64:ff9b::5db8:d70e]/", // a NAT64 gateway, not 93.184.215.14
		"https://[::5db8:d70e]/",        // IPv4-compatible: not 93.184.215.14 either
		"https://example.com.evil.com/",
	}
	seen := map[string]string{}
	for _, raw := range urls {
		key, err := DestinationKey(raw)
		if err != nil {
			t.Errorf("DestinationKey(%q): %v", raw, err)
			continue
		}
		if other, ok := seen[key]; ok {
			t.Errorf("DestinationKey(%q) = DestinationKey(%q) = %q", raw, other, key)
		}
		seen[key] = raw
	}
}

func TestDestinationKeyErrors(t *testing.T) {
	for _, raw := range []string{
		"",
		"example.com",
		"/hook",
		"//example.com/",
		"ftp://example.com/",
		"javascript:alert(1)",
		"https:example.com",
		"https://",
		"https:///hook",
		"https://:443/",
		"https://example..com/",
		"https://.example.com/",
		"https://example.com../",
		"https://./",
		"https://example.com:65536/",
		"https://example.com:0/",
		"https://example.com:https/",
		"https://[::1/",
		"http://]", // url.Parse takes ] for a host
		"https://exa mple.com/",
		"https://example.com/\x00",
		"https://ab--cd.bücher.de/", // IDNA refuses -- in the third and fourth place
		"https://a\u200db.de/",      // a zero-width joiner in the wrong place
	} {
		key, err := DestinationKey(raw)
		if err == nil {
			t.Errorf("DestinationKey(%q) = %q, want an error", raw, key)
			continue
		}
		if !errors.Is(err, ErrDestinationKey) || errors.Is(err, ErrForbidden) {
			t.Errorf("DestinationKey(%q) = %v, want ErrDestinationKey and not ErrForbidden", raw, err)
		}
	}
}

// Whatever CheckURL accepts has a key.
func TestDestinationKeyOfAcceptedURLs(t *testing.T) {
	for _, tt := range checkURLTests {
		if tt.want != nil {
			continue
		}
		if _, err := DestinationKey(tt.url); err != nil {
			t.Errorf("CheckURL accepts %s but DestinationKey fails: %v", quote(tt.url), err)
		}
	}
}
