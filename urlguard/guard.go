package urlguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Guard applies the policy with optional exemptions, denied ranges and a
// port list. A nil *Guard and the zero Guard both apply the default policy:
// no exemptions, nothing denied beyond the default tables, every port. A
// Guard is immutable once built and safe for concurrent use.
type Guard struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	ports []uint16 // sorted, unique; nil means every port 1-65535
}

// Options configures a Guard built by NewWithOptions. The zero Options is
// the default policy.
type Options struct {
	// Allow exempts prefixes from the address rules, as New's arguments do
	// (URLGUARD_ALLOW_CIDRS; tests use 127.0.0.1/32 and ::1/128).
	Allow []netip.Prefix
	// Deny refuses prefixes the address rules would otherwise accept: the
	// provider's own public ranges (its egress NAT, VPC IPv6, anything that
	// allow-lists it), from URLGUARD_DENY_CIDRS. Deny wins over Allow: an
	// address inside both is refused, so an exemption can never reopen a
	// denied range (Allow 10.0.0.0/8 with Deny 10.1.0.0/16 refuses
	// 10.1.2.3). A denied IPv4 prefix also refuses the IPv4-mapped,
	// IPv4-compatible and NAT64 (64:ff9b::/96) forms of its addresses,
	// since a NAT64 gateway would connect to the IPv4 address it carries.
	Deny []netip.Prefix
	// AllowedPorts, when not empty, are the only ports a URL may name (a URL
	// without a port names 443) and a dial may reach, from
	// URLGUARD_ALLOWED_PORTS. Empty means every port 1-65535; 0 is ignored.
	AllowedPorts []uint16
}

// New returns a Guard that exempts the given prefixes from the address rules:
// an IP-literal host inside one passes CheckURL's address check, and so does
// a dial to an address inside one. Exemptions never lift the other rules
// (scheme, userinfo, names such as localhost, characters, length, port).
// New() is the default policy. Prefixes are stored masked (10.1.2.3/8 becomes
// 10.0.0.0/8, which is what it matched anyway); invalid prefixes are dropped.
//
// Exemptions exist for tests (127.0.0.1/32, ::1/128) and for deliberate
// operator configuration; callers should log Allowed() as a warning.
//
// New(allow...) is NewWithOptions(Options{Allow: allow}).
func New(allow ...netip.Prefix) *Guard { return NewWithOptions(Options{Allow: allow}) }

// NewWithOptions returns a Guard for o. Prefixes are stored masked and
// invalid ones dropped, as New does; ports are stored sorted without
// duplicates, and port 0 is dropped.
func NewWithOptions(o Options) *Guard {
	g := &Guard{allow: masked(o.Allow), deny: masked(o.Deny)}
	for _, p := range o.AllowedPorts {
		if p != 0 {
			g.ports = append(g.ports, p)
		}
	}
	slices.Sort(g.ports)
	g.ports = slices.Compact(g.ports)
	return g
}

func masked(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Allowed returns a copy of g's exemptions; nil for the default policy.
func (g *Guard) Allowed() []netip.Prefix {
	if g == nil {
		return nil
	}
	return slices.Clone(g.allow)
}

// Denied returns a copy of g's denied prefixes; nil for the default policy.
func (g *Guard) Denied() []netip.Prefix {
	if g == nil {
		return nil
	}
	return slices.Clone(g.deny)
}

// AllowedPorts returns a copy of g's port list, sorted; nil means every port.
func (g *Guard) AllowedPorts() []uint16 {
	if g == nil {
		return nil
	}
	return slices.Clone(g.ports)
}

func (g *Guard) exempt(ip netip.Addr) bool {
	if g == nil {
		return false
	}
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// checkPortAllowed refuses port (ErrPort) unless g's port list is empty or
// holds it. what names the port for the error ("port 8080").
func (g *Guard) checkPortAllowed(port uint16, what string) error {
	if g == nil || len(g.ports) == 0 {
		return nil
	}
	if _, ok := slices.BinarySearch(g.ports, port); ok {
		return nil
	}
	list := make([]string, len(g.ports))
	for i, p := range g.ports {
		list[i] = strconv.Itoa(int(p))
	}
	return refuse(ErrPort, "%s is not one of the allowed ports (%s)", what, strings.Join(list, ", "))
}

// ParseAllowList parses a comma-separated list of exemptions, the format of
// the URLGUARD_ALLOW_CIDRS environment variable, e.g. "127.0.0.1/32, ::1".
// Space around items is ignored and empty items are skipped, so "" (and
// " , ") yields nil, nil. A bare IP means that single address (/32 or /128).
// Items with host bits set (10.0.0.1/8) or a zone are refused rather than
// guessed at, since an exemption wider than intended is a hole; the error
// names the item.
func ParseAllowList(s string) ([]netip.Prefix, error) { return parsePrefixList("allow", s) }

// ParseDenyList parses a comma-separated list of denied prefixes, the format
// of the URLGUARD_DENY_CIDRS environment variable, e.g.
// "203.0.113.0/24, 2001:db8:42::/48". The syntax and its errors are those of
// ParseAllowList: a bare IP is one address, host bits or a zone are errors
// (a deny list narrower than intended is a hole too), "" yields nil, nil.
func ParseDenyList(s string) ([]netip.Prefix, error) { return parsePrefixList("deny", s) }

func parsePrefixList(kind, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := parsePrefixItem(item)
		if err != nil {
			return nil, fmt.Errorf("urlguard: %s list item %d %q: %w", kind, i+1, item, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefixItem(item string) (netip.Prefix, error) {
	if !strings.Contains(item, "/") {
		ip, err := netip.ParseAddr(item)
		if err != nil {
			return netip.Prefix{}, err
		}
		if ip.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("zones are not allowed")
		}
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(item)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("has host bits set; did you mean %s?", p.Masked())
	}
	return p, nil
}

// ParsePortList parses a comma-separated list of ports, the format of the
// URLGUARD_ALLOWED_PORTS environment variable, e.g. "443, 8443". Space around
// items is ignored and empty items are skipped, so "" yields nil, nil (every
// port allowed). Each item must be a decimal number in 1-65535 without sign
// or leading zero, as CheckURL wants ports written; the error names the item.
// Duplicates are kept; NewWithOptions removes them.
func ParsePortList(s string) ([]uint16, error) {
	var out []uint16
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		n, err := strconv.ParseUint(item, 10, 16)
		switch {
		case err != nil || n == 0:
			return nil, fmt.Errorf("urlguard: port list item %d %q: not a port in 1-65535", i+1, item)
		case item[0] < '1' || item[0] > '9':
			return nil, fmt.Errorf("urlguard: port list item %d %q: write the port without sign or leading zero", i+1, item)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// Control has the signature of net.Dialer.Control, so it runs after DNS and
// before connect(2), for every address the dialer tries, redirects included:
//
//	&http.Transport{DialContext: (&net.Dialer{Control: g.Control}).DialContext}
//
// (with Proxy left nil, or the proxy would be the only address judged).
// Guard.DialContext wraps such a dialer and also keeps Control as its last
// check. Control refuses networks other than tcp, tcp4 and tcp6, addresses
// that do not parse as ip:port, any IP CheckAddr refuses (ErrAddress), and a
// port outside g's allowed ports (ErrPort). The RawConn is not used and may
// be nil. Every error wraps ErrForbidden.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	if !isTCP(network) {
		return refuse(ErrAddress, "network %q is not tcp", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refuse(ErrAddress, "dial address %q is not ip:port", address)
	}
	if err := g.CheckAddr(ap.Addr()); err != nil {
		return err
	}
	return g.checkPortAllowed(ap.Port(), fmt.Sprintf("port %d", ap.Port()))
}

func isTCP(network string) bool {
	return network == "tcp" || network == "tcp4" || network == "tcp6"
}
