package urlguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// ErrDestinationKey is wrapped by every DestinationKey error. It is not a
// refusal: it does not wrap ErrForbidden.
var ErrDestinationKey = errors.New("urlguard: no destination key")

// DestinationKey returns the key under which deliveries to rawURL share a
// per-destination concurrency cap: "host:port", the form net.JoinHostPort
// writes, e.g. "example.com:443", "93.184.215.14:8443", "[2606:4700::1111]:443".
// Every spelling of one destination gives one key:
//
//   - the port is always written, the scheme's default when the URL has none
//     (443 for https, 80 for http; other schemes are an error), without
//     leading zeros; the scheme itself is not part of the key, since the
//     port already names the socket;
//   - an IP literal is written canonically by net/netip: IPv4-mapped IPv6 as
//     IPv4, zone dropped, IPv6 compressed and lower case in brackets;
//   - a name is lower-cased, loses one trailing dot, is converted to its
//     ASCII (punycode) form by IDNA's lookup profile when it is not ASCII
//     (bücher.de is xn--bcher-kva.de), and is then reduced to its registrable
//     domain, one label below its public suffix in the whole Public Suffix
//     List: a.slow.example.com and slow.example.com both key as example.com,
//     a.b.example.co.uk as example.co.uk. The list's private section counts,
//     so tenants of shared platforms keep their own keys (a.herokuapp.com
//     and b.herokuapp.com differ; so do two API Gateway hosts under
//     execute-api.<region>.amazonaws.com). A name that is itself a public
//     suffix keys as itself; a name under no rule keys by its last two
//     labels (the list's "*" rule).
//
// Userinfo, path, query and fragment are ignored. The key does not judge the
// URL: check it with CheckURL first.
//
// Limits: the key is computed from the text alone, without DNS, so distinct
// registrable domains pointing at one server (or a CNAME to it) still count
// as distinct destinations, as do a name and the IP it resolves to; so do
// names minted under a private-section suffix that hands out free
// subdomains. The cap bounds what one registrable domain can hold, not what
// one server can.
//
// The error wraps ErrDestinationKey when rawURL does not parse, has no host,
// or has a host that is neither an IP address nor a DNS name as CheckURL
// accepts them (1-63 byte labels of letters, digits, - and _; 253 bytes in
// all), after IDNA for a non-ASCII name. It never panics, whatever the input.
func DestinationKey(rawURL string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrDestinationKey, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fail("URL does not parse")
	}
	var port uint64
	switch strings.ToLower(u.Scheme) {
	case "https":
		port = 443
	case "http":
		port = 80
	default:
		return fail("scheme %q is not http or https", clipText(u.Scheme))
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16) // url.Parse let only digits through
		if err != nil || n == 0 {
			return fail("port %q is outside 1-65535", clipText(p))
		}
		port = n
	}
	host, err := destinationHost(u.Hostname())
	if err != nil {
		return fail("%v", err)
	}
	return net.JoinHostPort(host, strconv.FormatUint(port, 10)), nil
}

// destinationHost reduces a URL's host name (no brackets, zone as
// url.URL.Hostname gives it) to the host part of DestinationKey.
func destinationHost(host string) (string, error) {
	if host == "" {
		return "", errors.New("URL has no host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.WithZone("").Unmap().String(), nil
	}
	name := strings.TrimSuffix(host, ".")
	if isASCII(name) {
		name = strings.ToLower(name)
	} else {
		// Not idna for ASCII names: its lookup profile refuses the
		// underscore (_dmarc.example.com), which DNS and CheckURL allow.
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("host %q is not a valid internationalized name", clipText(host))
		}
		name = strings.TrimSuffix(a, ".") // IDNA maps 。 and ． to ".": one more trailing dot may appear
		if ip, err := netip.ParseAddr(name); err == nil {
			return ip.Unmap().String(), nil // １２７.０.０.１ is 127.0.0.1
		}
	}
	if why := dnsNameProblem(name); why != "" {
		return "", fmt.Errorf("host %q is not a valid DNS name (%s)", clipText(host), why)
	}
	if reg, err := publicsuffix.EffectiveTLDPlusOne(name); err == nil {
		return reg, nil
	}
	return name, nil // a public suffix itself: nothing to reduce
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// clipText keeps error texts short whatever the input; %q makes them
// printable.
func clipText(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
