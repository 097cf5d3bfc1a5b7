package urlguard

import (
	"net/netip"
	"strings"
	"testing"
)

var checkURLTests = []struct {
	url  string
	want error
}{
	// accepted
	{"https://example.com/hook?x=1", nil},
	{"https://example.com", nil},
	{"https://example.com/", nil},
	{"HTTPS://Example.COM/Hook", nil},
	{"hTtPs://example.com./hook", nil}, // fully qualified
	{"https://example.com:443/hook", nil},
	{"https://example.com:8443/hook", nil},
	{"https://example.com:65535/", nil},
	{"https://example.com:1/", nil},
	{"https://a.b.c.example.co.uk/p/a/t/h?q=1&r=%2F#frag", nil},
	{"https://xn--bcher-kva.de/hook", nil}, // IDN in punycode
	{"https://_dmarc.example.com/", nil},
	{"https://my-host.example.com/", nil},
	{"https://127.0.0.1.nip.io/", nil},    // a name; its address is judged at dial time
	{"https://0x7f.example.com/", nil},    // only the last label decides
	{"https://1.2.3.4.example.com/", nil}, // idem
	{"https://example.com/user@host", nil},
	{"https://example.com/?next=http://127.0.0.1/", nil},
	{"https://example.com/#@127.0.0.1", nil},
	{"https://93.184.215.14/", nil},
	{"https://8.8.8.8:8443/hook", nil},
	{"https://[2606:4700::1111]/", nil},
	{"https://[2606:4700:4700::1111]:8443/hook", nil},
	{"https://[2001:4860:4860::8888]/", nil},
	{"https://[::ffff:8.8.8.8]/", nil}, // IPv4-mapped public address
	{"https://example.com/" + strings.Repeat("a", MaxURLLen-len("https://example.com/")), nil},
	// under an ICANN public suffix; the PSL's private section does not matter
	{"https://foo.herokuapp.com/hook", nil},
	{"https://herokuapp.com/", nil}, // a private suffix, but a name under com
	{"https://user.github.io/hook", nil},
	{"https://abc.execute-api.us-east-1.amazonaws.com/prod", nil},
	{"https://city.kawasaki.jp/", nil}, // an exception (!city.kawasaki.jp) to *.kawasaki.jp
	{"https://www.ck/", nil},           // an exception (!www.ck) to *.ck
	{"https://a.foo.ck/", nil},
	{"https://api.example.prod/", nil}, // .prod is a delegated gTLD

	// length
	{"https://example.com/" + strings.Repeat("a", MaxURLLen-len("https://example.com/")+1), ErrTooLong},
	{"https://127.0.0.1/" + strings.Repeat("a", 3000), ErrTooLong},

	// characters
	{"https://example.com/a b", ErrCharacters},
	{"https://example.com /", ErrCharacters},
	{" https://example.com/", ErrCharacters},
	{"https://example.com/\t", ErrCharacters},
	{"https://exa\tmple.com/", ErrCharacters},
	{"https://example.com\n/", ErrCharacters},
	{"https://example.com/\r\nHost: evil", ErrCharacters},
	{"https://example.com/\x00", ErrCharacters},
	{"https://example.com/\x7f", ErrCharacters},
	{"https://example.com/\x1b[0m", ErrCharacters},
	{"https://127.0.0.1\\@example.com/", ErrCharacters},
	{"https://example.com\\@127.0.0.1/", ErrCharacters},
	{"https:\\\\127.0.0.1/", ErrCharacters},
	{"https://example.com/café", ErrCharacters},
	{"https://example.com/?q=\xff", ErrCharacters},
	{"https://example.com/%zz", ErrCharacters},
	{"https://example.com/%4", ErrCharacters},
	{"https://example.com/%", ErrCharacters},
	{"https://example.com/#%g0", ErrCharacters},

	// scheme
	{"", ErrScheme},
	{"example.com", ErrScheme},
	{"//example.com/hook", ErrScheme},
	{"http://example.com/", ErrScheme},
	{"HTTP://example.com/", ErrScheme},
	{"http://127.0.0.1/", ErrScheme},
	{"ftp://example.com/", ErrScheme},
	{"file:///etc/passwd", ErrScheme},
	{"gopher://127.0.0.1:6379/_", ErrScheme},
	{"javascript:alert(1)", ErrScheme},
	{"data:text/plain,hi", ErrScheme},
	{"httpss://example.com/", ErrScheme},
	{"httpſ://example.com/", ErrScheme}, // long s folds to s in Unicode
	{"https+unix://example.com/", ErrScheme},
	{":https://example.com/", ErrScheme},
	{"1https://example.com/", ErrScheme},
	{"token123:secret@example.com", ErrScheme},

	// authority and host
	{"https:example.com", ErrHost},
	{"https:/example.com", ErrHost},
	{"https:", ErrHost},
	{"https://", ErrHost},
	{"https:///hook", ErrHost},
	{"https:////example.com/", ErrHost},
	{"https://?x", ErrHost},
	{"https://#x", ErrHost},
	{"https://:443/", ErrHost},
	{"https://./", ErrHost},
	{"https://example..com/", ErrHost},
	{"https://.example.com/", ErrHost},
	{"https://example.com../", ErrHost},
	{"https://-example.com/", ErrHost},
	{"https://example-.com/", ErrHost},
	{"https://exa!mple.com/", ErrHost},
	{"https://exa*mple.com/", ErrHost},
	{"https://exa~mple.com/", ErrHost},
	{"https://example.com;127.0.0.1/", ErrAmbiguousIP}, // numeric last label wins
	{"https://example.com,127.0.0.1/", ErrAmbiguousIP},
	{"https://example.com;x/", ErrHost},
	{"https://example.com,x/", ErrHost},
	{"https://exa\"mple.com/", ErrHost},
	{"https://" + strings.Repeat("a", 64) + ".com/", ErrHost},
	{"https://" + strings.Repeat("a.", 127) + "com/", ErrHost}, // 257 bytes
	{"https://[::1/", ErrHost},
	{"https://[2606:4700::1111]x/", ErrHost},
	{"https://[2606:4700::1111]]/", ErrHost},
	{"https://[v1.fe80::a+en1]/", ErrHost}, // IPvFuture
	{"https://[example.com]/", ErrHost},
	{"https://[]/", ErrHost},
	{"https://[0x7f.0.0.1]/", ErrHost},

	// userinfo
	{"https://user@example.com/", ErrUserinfo},
	{"https://user:pass@example.com/", ErrUserinfo},
	{"https://@example.com/", ErrUserinfo},
	{"https://:@example.com/", ErrUserinfo},
	{"https://user@127.0.0.1/", ErrUserinfo},
	{"https://example.com@127.0.0.1/", ErrUserinfo},
	{"https://example.com:443@127.0.0.1/", ErrUserinfo},
	{"https://127.0.0.1@example.com/", ErrUserinfo},
	{"https://a%40b@example.com/", ErrUserinfo},

	// port
	{"https://example.com:/", ErrPort},
	{"https://example.com:0/", ErrPort},
	{"https://example.com:65536/", ErrPort},
	{"https://example.com:99999999999999999999/", ErrPort},
	{"https://example.com:-1/", ErrPort},
	{"https://example.com:+443/", ErrPort},
	{"https://example.com:0443/", ErrPort},
	{"https://example.com:https/", ErrPort},
	{"https://example.com:0x1bb/", ErrPort},
	{"https://example.com:443:443/", ErrPort},
	{"https://example.com:4%343/", ErrPort},
	{"https://[2606:4700::1111]:/", ErrPort},
	{"https://[2606:4700::1111]:70000/", ErrPort},
	{"https://::1/", ErrHost},

	// internal names, any case, with and without the trailing dot
	{"https://localhost/", ErrInternalName},
	{"https://localhost./", ErrInternalName},
	{"https://LOCALHOST/", ErrInternalName},
	{"https://LocalHost.:8443/", ErrInternalName},
	{"https://foo.localhost/", ErrInternalName},
	{"https://a.b.LOCALHOST./", ErrInternalName},
	{"https://localhost.localdomain/", ErrInternalName},
	{"https://printer.local/", ErrInternalName},
	{"https://printer.LOCAL./", ErrInternalName},
	{"https://db.internal/", ErrInternalName},
	{"https://db.eu.internal./", ErrInternalName},
	{"https://router.home.arpa/", ErrInternalName},
	{"https://router.HOME.ARPA./", ErrInternalName},
	{"https://nas.localdomain/", ErrInternalName},
	{"https://nas.lan/", ErrInternalName},
	{"https://wiki.corp/", ErrInternalName},
	{"https://x.test/", ErrInternalName},
	{"https://x.example/", ErrInternalName},
	{"https://x.invalid/", ErrInternalName},
	{"https://abc.onion/", ErrInternalName},
	{"https://redis/", ErrInternalName}, // single label: resolved via search domains
	{"https://redis.:6379/", ErrInternalName},
	{"https://internal/", ErrInternalName},
	{"https://local/", ErrInternalName},
	{"https://com/", ErrInternalName},
	{"https://kubernetes.default/", ErrInternalName},
	{"https://kubernetes.default.svc/", ErrInternalName},
	{"https://kubernetes.default.svc.cluster.local/", ErrInternalName},

	// names under no ICANN public suffix: with ndots:5 they would go
	// through the pod's search domains first
	{"https://redis.default/", ErrInternalName},
	{"https://redis.default./", ErrInternalName},
	{"https://redis.default.svc/", ErrInternalName},
	{"https://redis.default.svc.cluster.local/", ErrInternalName},
	{"https://grafana.monitoring:3000/", ErrInternalName},
	{"https://api.staging/", ErrInternalName},
	{"https://printer.zz/", ErrInternalName},
	{"https://a.b.c.notatld/", ErrInternalName},
	{"https://ck/", ErrInternalName},

	// a public suffix itself: no registrable part
	{"https://co.uk/", ErrPublicSuffix},
	{"https://CO.UK./", ErrPublicSuffix},
	{"https://foo.ck/", ErrPublicSuffix},        // *.ck
	{"https://x.kawasaki.jp/", ErrPublicSuffix}, // *.kawasaki.jp
	{"https://in-addr.arpa/", ErrPublicSuffix},
	{"https://github.com.au/", nil}, // a name registered under com.au

	// cloud metadata names
	{"https://metadata.google.internal/computeMetadata/v1/", ErrMetadata},
	{"https://METADATA.GOOGLE.INTERNAL./", ErrMetadata},
	{"https://metadata/", ErrMetadata},
	{"https://metadata./", ErrMetadata},
	{"https://metadata.goog/", ErrMetadata},
	{"https://Metadata.Goog./", ErrMetadata},
	{"https://instance-data/latest/meta-data/", ErrMetadata},
	{"https://instance-data.ec2.internal/", ErrMetadata},
	{"https://INSTANCE-DATA.EC2.INTERNAL./", ErrMetadata},
	{"https://metadata.azure.com/", ErrMetadata},

	// IP literals that are not public
	{"https://127.0.0.1/", ErrAddress},
	{"https://127.0.0.1:8443/hook", ErrAddress},
	{"https://0.0.0.0/", ErrAddress},
	{"https://10.0.0.1/", ErrAddress},
	{"https://100.64.0.1/", ErrAddress},
	{"https://169.254.169.254/latest/meta-data/", ErrAddress},
	{"https://172.16.0.1/", ErrAddress},
	{"https://192.168.1.1/", ErrAddress},
	{"https://224.0.0.1/", ErrAddress},
	{"https://255.255.255.255/", ErrAddress},
	{"https://[::1]/", ErrAddress},
	{"https://[::1]:8443/", ErrAddress},
	{"https://[::]/", ErrAddress},
	{"https://[0:0:0:0:0:0:0:1]/", ErrAddress},
	{"https://[::ffff:127.0.0.1]/", ErrAddress},
	{"https://[::ffff:7f00:1]/", ErrAddress},
	{"https://[::ffff:169.254.169.254]/", ErrAddress},
	{"https://[::127.0.0.1]/", ErrAddress},
	{"https://[64:ff9b::10.0.0.1]/", ErrAddress},
	{"https://[64:ff9b:1::8.8.8.8]/", ErrAddress},
	{"https://[2002:7f00:1::1]/", ErrAddress},
	{"https://[2001::1]/", ErrAddress},
	{"https://[fc00::1]/", ErrAddress},
	{"https://[fd00:ec2::254]/", ErrAddress},
	{"https://[fe80::1]/", ErrAddress},
	{"https://[fe80::1%25eth0]/", ErrAddress},
	{"https://[FE80::1%25eth0]:8443/", ErrAddress},
	{"https://[fe80::1%eth0]/", ErrAddress},
	{"https://[ff02::1]/", ErrAddress},
	{"https://[2001:db8::1]/", ErrAddress},
	{"https://[127.0.0.1]/", ErrAddress},

	// hosts a parser could read as an IP in a non-canonical form
	{"https://2130706433/", ErrAmbiguousIP},   // decimal
	{"https://017700000001/", ErrAmbiguousIP}, // octal, one part
	{"https://0177.0.0.1/", ErrAmbiguousIP},   // octal
	{"https://0127.0.0.1/", ErrAmbiguousIP},   // octal 87.0.0.1
	{"https://0x7f.1/", ErrAmbiguousIP},
	{"https://0x7f.0.0.1/", ErrAmbiguousIP},
	{"https://0X7F.0X0.0X0.0X1/", ErrAmbiguousIP},
	{"https://0x7f000001/", ErrAmbiguousIP},
	{"https://0x7F000001./", ErrAmbiguousIP},
	{"https://0x/", ErrAmbiguousIP},
	{"https://127.1/", ErrAmbiguousIP},
	{"https://127.0.1/", ErrAmbiguousIP},
	{"https://10.1/", ErrAmbiguousIP},
	{"https://0/", ErrAmbiguousIP},
	{"https://010.0.0.1/", ErrAmbiguousIP},
	{"https://127.000.0.1/", ErrAmbiguousIP},
	{"https://08.08.08.08/", ErrAmbiguousIP},
	{"https://127.0.0.1./", ErrAmbiguousIP},
	{"https://8.8.8.8./", ErrAmbiguousIP}, // even public: one canonical form only
	{"https://1.2.3.4.5/", ErrAmbiguousIP},
	{"https://256.0.0.1/", ErrAmbiguousIP},
	{"https://example.123/", ErrAmbiguousIP},
	{"https://example.0x1/", ErrAmbiguousIP},
	{"https://%31%32%37.0.0.1/", ErrAmbiguousIP},
	{"https://127.0.0.%31/", ErrAmbiguousIP},
	{"https://exam%70le.com/", ErrAmbiguousIP},
	{"https://localhost%2ecom/", ErrAmbiguousIP},
	{"https://１２７.０.０.１/", ErrAmbiguousIP}, // full-width digits and dots
	{"https://127。0.0.1/", ErrAmbiguousIP}, // ideographic full stop
	{"https://127．0．0．1/", ErrAmbiguousIP}, // full-width full stop
	{"https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", ErrAmbiguousIP},
	{"https://bücher.example/", ErrAmbiguousIP}, // IDN not in punycode
	{"https://exam\u200bple.com/", ErrAmbiguousIP},
	{"https://\xff.com/", ErrAmbiguousIP},
	{"https://[2606:4700::1111%25eth0]/", ErrAmbiguousIP}, // zone on a public address
	{"https://[8.8.8.8]/", ErrAmbiguousIP},                // IPv4 in brackets
}

func TestCheckURL(t *testing.T) {
	for _, tt := range checkURLTests {
		checkRefusal(t, "CheckURL("+quote(tt.url)+")", CheckURL(tt.url), tt.want)
		checkRefusal(t, "New().CheckURL("+quote(tt.url)+")", New().CheckURL(tt.url), tt.want)
	}
}

// quote keeps test names readable: long URLs are cut.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:60] + "..."
	}
	return `"` + s + `"`
}

// An exemption lifts the address rule for IP literals and nothing else.
func TestCheckURLExempt(t *testing.T) {
	g := New(netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"))
	tests := []struct {
		url  string
		want error
	}{
		{"https://127.0.0.1:8443/hook", nil},
		{"https://127.0.0.1/", nil},
		{"HTTPS://127.0.0.1:1/", nil},
		{"https://[::1]:8443/hook", nil},
		{"https://[::ffff:127.0.0.1]:8443/", nil},
		{"https://example.com/hook", nil},
		{"https://127.0.0.2/", ErrAddress},
		{"https://10.0.0.1/", ErrAddress},
		{"https://[::2]/", ErrAddress},
		{"http://127.0.0.1/", ErrScheme},
		{"http://127.0.0.1:8443/hook", ErrScheme},
		{"https://localhost/", ErrInternalName},
		{"https://localhost:8443/", ErrInternalName},
		{"https://user@127.0.0.1/", ErrUserinfo},
		{"https://@127.0.0.1/", ErrUserinfo},
		{"https://127.0.0.1:0/", ErrPort},
		{"https://127.0.0.1:/", ErrPort},
		{"https://127.1/", ErrAmbiguousIP},
		{"https://2130706433/", ErrAmbiguousIP},
		{"https://127.0.0.1./", ErrAmbiguousIP},
		{"https://[::1%25lo]/", ErrAmbiguousIP},
		{"https://127.0.0.1/a b", ErrCharacters},
		{"https://127.0.0.1/" + strings.Repeat("a", MaxURLLen), ErrTooLong},
	}
	for _, tt := range tests {
		checkRefusal(t, "exempt CheckURL("+quote(tt.url)+")", g.CheckURL(tt.url), tt.want)
	}
}

func TestCheckURLMessages(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://example.com/", `urlguard: destination not allowed: scheme "http" is not https`},
		{"https://localhost/", `urlguard: destination not allowed: host "localhost" is under .localhost, which is never public`},
		{"https://10.0.0.1/", `urlguard: destination not allowed: address 10.0.0.1 is in 10.0.0.0/8 (private-use, RFC 1918)`},
		{"https://redis.default/", `urlguard: destination not allowed: host "redis.default" is not under a public suffix (ICANN section of the Public Suffix List), so only a private resolver can answer it`},
		{"https://co.uk/", `urlguard: destination not allowed: host "co.uk" is a public suffix; use a name registered under it`},
	}
	for _, tt := range tests {
		if err := CheckURL(tt.url); err == nil || err.Error() != tt.want {
			t.Errorf("CheckURL(%q) = %v, want %q", tt.url, err, tt.want)
		}
	}
}

// Errors must not repeat credentials or secrets that precede a colon.
func TestCheckURLDoesNotLeakSecrets(t *testing.T) {
	for _, raw := range []string{
		"https://user:s3cretpw@example.com/",
		"https://s3cretpw@127.0.0.1/",
		"s3cretpw:x@example.com",
		"https://example.com/?token=s3cretpw\x00",
		"https://example.com/s3cretpw/\xff",
	} {
		err := CheckURL(raw)
		if err == nil || strings.Contains(err.Error(), "s3cretpw") {
			t.Errorf("CheckURL(%q) = %v: refusal missing or leaks the secret", raw, err)
		}
	}
}

// Each refusal carries exactly one reason.
func TestCheckURLOneReason(t *testing.T) {
	for _, tt := range checkURLTests {
		err := CheckURL(tt.url)
		if err == nil {
			continue
		}
		if n := countReasons(err); n != 1 {
			t.Errorf("CheckURL(%s) = %v carries %d reasons, want 1", quote(tt.url), err, n)
		}
	}
}

func TestCheckURLDenyAndPorts(t *testing.T) {
	g := NewWithOptions(Options{
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")},
		Deny:         []netip.Prefix{netip.MustParsePrefix("203.0.114.0/24"), netip.MustParsePrefix("2a05:d000::/32"), netip.MustParsePrefix("10.1.0.0/16")},
		AllowedPorts: []uint16{443, 8443},
	})
	tests := []struct {
		url  string
		want error
	}{
		{"https://example.com/", nil}, // 443 by default
		{"https://example.com:443/", nil},
		{"https://example.com:8443/hook", nil},
		{"https://127.0.0.1:8443/", nil},
		{"https://10.9.0.1/", nil},
		{"https://203.0.115.1/", nil},
		{"https://example.com:8080/", ErrPort},
		{"https://example.com:80/", ErrPort},
		{"https://127.0.0.1:9000/", ErrPort},
		{"https://example.com:0/", ErrPort}, // malformed before it is not allowed
		{"https://203.0.114.7/", ErrAddress},
		{"https://[::ffff:203.0.114.7]/", ErrAddress},
		{"https://[64:ff9b::203.0.114.7]/", ErrAddress}, // NAT64 to our own egress
		{"https://[2a05:d000::1]/", ErrAddress},
		{"https://10.1.2.3/", ErrAddress}, // deny wins over allow 10.0.0.0/8
		{"https://redis.default:8443/", ErrInternalName},
	}
	for _, tt := range tests {
		checkRefusal(t, "CheckURL("+quote(tt.url)+")", g.CheckURL(tt.url), tt.want)
	}
	// Without a port list, any port passes, as before.
	if err := New().CheckURL("https://example.com:8080/"); err != nil {
		t.Errorf("default Guard refuses port 8080: %v", err)
	}
	const want = `urlguard: destination not allowed: port 443 (the https default) is not one of the allowed ports (8443)`
	if err := NewWithOptions(Options{AllowedPorts: []uint16{8443}}).CheckURL("https://example.com/"); err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}
