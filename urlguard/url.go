package urlguard

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// MaxURLLen is the longest URL CheckURL accepts, in bytes.
const MaxURLLen = 2048

// metadataNames are cloud instance-metadata host names. Their addresses
// (169.254.169.254, fd00:ec2::254, 100.100.100.200) are refused at dial time
// anyway; refusing the names too gives a clear answer at registration.
var metadataNames = map[string]bool{
	"metadata.google.internal":   true, // GCP
	"metadata":                   true, // GCP short name, via the search domain
	"metadata.goog":              true, // GCP
	"instance-data":              true, // AWS EC2, via the search domain
	"instance-data.ec2.internal": true, // AWS EC2 (us-east-1 internal zone)
	// Azure's metadata service has no documented name (only 169.254.169.254);
	// metadata.azure.com is listed defensively: azure.com is Microsoft's, so
	// it is never a customer's receiver.
	"metadata.azure.com": true,
}

// internalNames are multi-label names that resolve only inside our own
// infrastructure (single-label names are refused wholesale).
var internalNames = map[string]bool{
	"kubernetes.default":     true, // Kubernetes API server, via the pod search domains
	"kubernetes.default.svc": true,
}

// internalSuffixes are top-level names (and the names under them) that can
// never be public: reserved by standard, or by ICANN never to be delegated.
var internalSuffixes = []string{
	"localhost",   // RFC 6761: always loopback
	"local",       // mDNS, RFC 6762
	"internal",    // ICANN-reserved for private use (2024); GCP/AWS internal zones
	"home.arpa",   // home networks, RFC 8375
	"localdomain", // conventional /etc/hosts default
	"lan",         // conventional router default (dnsmasq, OpenWrt); not delegated
	"home",        // ICANN will not delegate (name collisions, 2018)
	"corp",        // ICANN will not delegate (name collisions, 2018)
	"mail",        // ICANN will not delegate (name collisions, 2018)
	"test",        // RFC 6761
	"invalid",     // RFC 6761
	"example",     // RFC 6761 (example.com etc. are ordinary names and allowed)
	"onion",       // Tor, RFC 7686
	"alt",         // non-DNS namespaces, RFC 9476
}

// CheckURL reports whether raw may be registered as a webhook URL under the
// default policy: nil, or an error wrapping ErrForbidden and one reason
// sentinel. It does no DNS: a host name is judged by its text, and its
// addresses are judged on every dial by Guard.DialContext and Guard.Control
// (Guard.Resolve does the same look-up for a caller that wants it at
// registration). The empty string is refused (ErrScheme).
func CheckURL(raw string) error { return (*Guard)(nil).CheckURL(raw) }

// CheckURL is the package-level CheckURL, except that an IP-literal host
// inside one of g's exempt prefixes passes the address check. Only the
// address check is lifted: https://localhost/ and http://127.0.0.1/ are
// refused whatever the exemptions. An IP-literal host inside one of g's
// denied prefixes is refused (ErrAddress), exempt or not; when g has
// allowed ports, the URL's port (443 when it names none) must be one of
// them (ErrPort).
//
// The URL is taken apart by hand, by RFC 3986's rules, rather than trusting a
// single lenient parser; net/url must then agree with what was found.
func (g *Guard) CheckURL(raw string) error {
	if len(raw) > MaxURLLen {
		return refuse(ErrTooLong, "URL is %d bytes, more than %d", len(raw), MaxURLLen)
	}
	// Parsers disagree about these, and some strip them silently
	// (WHATWG drops tabs and newlines, reads \ as /); refuse outright.
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c < 0x20 || c == 0x7f:
			return refuse(ErrCharacters, "URL has control character 0x%02x at byte %d", c, i)
		case c == ' ':
			return refuse(ErrCharacters, "URL has a space at byte %d", i)
		case c == '\\':
			return refuse(ErrCharacters, "URL has a backslash at byte %d", i)
		}
	}

	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || !validScheme(scheme) {
		return refuse(ErrScheme, "URL has no valid scheme; it must start with https://")
	}
	if !asciiEqualFold(scheme, "https") { // not strings.EqualFold: "httpſ" would fold to https
		if !strings.HasPrefix(rest, "//") {
			// Maybe not a scheme at all but "user:password@host".
			return refuse(ErrScheme, "URL scheme is not https")
		}
		return refuse(ErrScheme, "scheme %q is not https", scheme)
	}
	// "https:host" and "https:/host" are opaque or relative to RFC 3986
	// but read as https://host by WHATWG: accept only the one reading.
	rest, ok = strings.CutPrefix(rest, "//")
	if !ok {
		return refuse(ErrHost, "URL has no authority; it must start with https://")
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Contains(authority, "@") {
		// Not echoed: what precedes @ is often a password.
		return refuse(ErrUserinfo, "URL has userinfo (an @ before the host); credentials are not allowed")
	}

	host, port, hasPort, err := splitHostPort(authority)
	if err != nil {
		return err
	}
	if err := g.checkHost(host); err != nil {
		return err
	}
	n := uint16(443) // the https default
	if hasPort {
		if err := checkPort(port); err != nil {
			return err
		}
		p, _ := strconv.Atoi(port) // checkPort made sure it is 1-65535
		n = uint16(p)
	}
	if err := g.checkPortAllowed(n, portWhat(n, hasPort)); err != nil {
		return err
	}
	if err := checkTail(tail); err != nil {
		return err
	}
	return crossCheck(raw, host, port)
}

// validScheme reports whether s has RFC 3986 scheme syntax and a sane length.
// Together with the "//" that must follow before it is echoed, this keeps a
// secret that merely precedes a colon ("token:abc@host") out of errors.
func validScheme(s string) bool {
	if s == "" || len(s) > 16 || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// splitHostPort splits an authority (without userinfo) into host and port.
// A bracketed host is returned with its brackets.
func splitHostPort(authority string) (host, port string, hasPort bool, err error) {
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", "", false, refuse(ErrHost, "host %q has no closing ]", authority)
		}
		host, after := authority[:end+1], authority[end+1:]
		if after == "" {
			return host, "", false, nil
		}
		if after[0] != ':' {
			return "", "", false, refuse(ErrHost, "unexpected %q after IPv6 literal %s", after, host)
		}
		return host, after[1:], true, nil
	}
	host, port, hasPort = strings.Cut(authority, ":")
	return host, port, hasPort, nil
}

func checkPort(port string) error {
	if port == "" {
		return refuse(ErrPort, "port is empty after ':'")
	}
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return refuse(ErrPort, "port %q is not a decimal number", port)
		}
	}
	if port[0] == '0' && len(port) > 1 {
		return refuse(ErrPort, "port %q has a leading zero", port)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return refuse(ErrPort, "port %q is outside 1-65535", port)
	}
	return nil
}

func portWhat(n uint16, explicit bool) string {
	if explicit {
		return fmt.Sprintf("port %d", n)
	}
	return "port 443 (the https default)"
}

// checkHost judges the host as written in the URL (brackets included).
func (g *Guard) checkHost(host string) error {
	if host == "" {
		return refuse(ErrHost, "URL has an empty host")
	}
	if host[0] == '[' {
		return g.checkIPv6Literal(host)
	}
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			// Full-width digits and ideographic full stops are folded to
			// ASCII by IDNA (１２７。０.０.１ is 127.0.0.1), so no
			// non-ASCII host is safe to judge by its text.
			return refuse(ErrAmbiguousIP, "host %q has non-ASCII characters; internationalized names must be sent in punycode (xn--)", host)
		}
	}
	if strings.Contains(host, "%") {
		return refuse(ErrAmbiguousIP, "host %q is percent-encoded", host)
	}
	// The only IPv4 form accepted: four decimal octets without leading
	// zeros, which netip insists on.
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		return g.CheckAddr(ip)
	}

	name := strings.ToLower(strings.TrimSuffix(host, "."))
	last := name[strings.LastIndexByte(name, '.')+1:]
	// inet_aton, WHATWG and others read a host whose last label is a
	// number (decimal, octal 0177, hex 0x7f) as IPv4: 127.1, 2130706433,
	// 0x7f.0.0.1, 127.0.0.1. No public name has a numeric TLD, so refuse.
	if last != "" && (allDigits(last) || strings.HasPrefix(last, "0x")) {
		return refuse(ErrAmbiguousIP, "host %q could be read as an IP address; write a public IP in canonical dotted-decimal form", host)
	}
	if err := checkDNSName(host, name); err != nil {
		return err
	}
	if metadataNames[name] {
		return refuse(ErrMetadata, "host %q is a cloud metadata service", host)
	}
	if internalNames[name] {
		return refuse(ErrInternalName, "host %q is an internal service name", host)
	}
	for _, s := range internalSuffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return refuse(ErrInternalName, "host %q is under .%s, which is never public", host, s)
		}
	}
	if !strings.Contains(name, ".") {
		// Resolvers try single-label names against the search domains
		// (resolv.conf, Kubernetes namespaces): they are internal.
		return refuse(ErrInternalName, "host %q is a single-label name", host)
	}
	return checkPublicSuffix(host, name)
}

// checkPublicSuffix accepts name (lower case, no trailing dot) only if it
// lies strictly below an ICANN-section public suffix of the Public Suffix
// List (golang.org/x/net/publicsuffix): example.com, a.b.example.co.uk. A
// name under no ICANN suffix (redis.default, svc.cluster.local, printer.zz)
// is refused as internal: with Kubernetes' ndots:5 a resolver would first
// try it against the pod's search domains, and only a private resolver can
// answer it anyway. A name that is an ICANN suffix itself (co.uk) is refused
// as having no owner.
//
// The PSL's private section (herokuapp.com, github.io, s3.amazonaws.com)
// does not decide acceptance: every private suffix sits below an ICANN one,
// so foo.herokuapp.com, and herokuapp.com itself, are accepted as names
// under com. The private section says who owns a name, which matters to
// DestinationKey, not whether it is public DNS. A TLD delegated after the
// list compiled into x/net was published is refused until x/net is updated.
func checkPublicSuffix(host, name string) error {
	suffix := icannSuffix(name)
	switch {
	case suffix == "":
		return refuse(ErrInternalName, "host %q is not under a public suffix (ICANN section of the Public Suffix List), so only a private resolver can answer it", host)
	case suffix == name:
		return refuse(ErrPublicSuffix, "host %q is a public suffix; use a name registered under it", host)
	}
	return nil
}

// icannSuffix returns the longest ICANN-section public suffix of name
// (lower-case ASCII without trailing dot), or "" if no ICANN rule matches it.
func icannSuffix(name string) string {
	s, icann := publicsuffix.PublicSuffix(name)
	for !icann {
		// s is a private-section suffix (herokuapp.com), or the last label
		// when no rule matched at all (the list's implicit "*" rule).
		// Look for an ICANN suffix above it.
		_, parent, ok := strings.Cut(s, ".")
		if !ok {
			return ""
		}
		s, icann = publicsuffix.PublicSuffix(parent)
	}
	return s
}

// checkIPv6Literal judges a bracketed host such as [2606:4700::1111].
func (g *Guard) checkIPv6Literal(host string) error {
	inner := host[1 : len(host)-1]
	addr, zone, hasZone := strings.Cut(inner, "%") // RFC 6874 writes the zone as %25eth0
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return refuse(ErrHost, "host %s is not a valid IPv6 literal", host)
	}
	// Judge the address first, so [fe80::1%25eth0] is refused for what it
	// is, and only then the form it is written in.
	if err := g.CheckAddr(ip); err != nil {
		return err
	}
	if !ip.Is6() {
		return refuse(ErrAmbiguousIP, "host %s is IPv4 in brackets; write it without them", host)
	}
	if hasZone {
		return refuse(ErrAmbiguousIP, "host %s has a zone (%%%s); zones are only meaningful on the local link", host, zone)
	}
	return nil
}

// checkDNSName checks name (lower case, trailing dot removed) is a DNS host
// name a resolver would look up (see dnsNameProblem). host is the original,
// for the error.
func checkDNSName(host, name string) error {
	if why := dnsNameProblem(name); why != "" {
		return refuse(ErrHost, "host %q is not a valid DNS name (%s)", host, why)
	}
	return nil
}

// dnsNameProblem returns why name (without trailing dot) is not a DNS host
// name a resolver would look up, or "" if it is one: 1-63 byte labels of
// letters, digits, hyphens and underscores, no hyphen at either end of a
// label, 253 bytes in all.
func dnsNameProblem(name string) string {
	if name == "" || len(name) > 253 {
		return "length"
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "empty or long label"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "label starts or ends with -"
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
				return fmt.Sprintf("character %q", c)
			}
		}
	}
	return ""
}

// checkTail checks the path, query and fragment. They cannot change the
// destination, but must be plain ASCII with well-formed percent-escapes so
// that every parser (and every service we hand the URL to) reads the same
// thing.
func checkTail(tail string) error {
	for i := 0; i < len(tail); i++ {
		switch c := tail[i]; {
		case c >= 0x80:
			return refuse(ErrCharacters, "URL path or query has a non-ASCII byte; percent-encode it")
		case c == '%':
			if i+2 >= len(tail) || !isHex(tail[i+1]) || !isHex(tail[i+2]) {
				return refuse(ErrCharacters, "URL path or query has a malformed percent-escape")
			}
		}
	}
	return nil
}

// crossCheck makes sure net/url, which the HTTP client will use, reads the
// URL exactly as CheckURL did. It should never fail; if it does, a parser
// differential is being probed, and refusing is the safe answer.
func crossCheck(raw, host, port string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return refuse(ErrCharacters, "URL does not parse")
	}
	wantHost := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if u.Scheme != "https" || u.Opaque != "" || u.User != nil ||
		!asciiEqualFold(u.Hostname(), wantHost) || u.Port() != port {
		return refuse(ErrHost, "URL is read differently by net/url")
	}
	return nil
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// asciiEqualFold is strings.EqualFold without Unicode folding.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
