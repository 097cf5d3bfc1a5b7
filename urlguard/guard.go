package urlguard

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// Guard applies the policy with optional exemptions. A nil *Guard and the
// zero Guard both apply the default policy, with no exemptions. A Guard is
// immutable once built and safe for concurrent use.
type Guard struct {
	allow []netip.Prefix
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
func New(allow ...netip.Prefix) *Guard {
	g := &Guard{}
	for _, p := range allow {
		if p.IsValid() {
			g.allow = append(g.allow, p.Masked())
		}
	}
	return g
}

// Allowed returns a copy of g's exemptions; nil for the default policy.
func (g *Guard) Allowed() []netip.Prefix {
	if g == nil {
		return nil
	}
	return slices.Clone(g.allow)
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

// ParseAllowList parses a comma-separated list of exemptions, the format of
// the URLGUARD_ALLOW_CIDRS environment variable, e.g. "127.0.0.1/32, ::1".
// Space around items is ignored and empty items are skipped, so "" (and
// " , ") yields nil, nil. A bare IP means that single address (/32 or /128).
// Items with host bits set (10.0.0.1/8) or a zone are refused rather than
// guessed at, since an exemption wider than intended is a hole; the error
// names the item.
func ParseAllowList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := parseAllowItem(item)
		if err != nil {
			return nil, fmt.Errorf("urlguard: allow list item %d %q: %w", i+1, item, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseAllowItem(item string) (netip.Prefix, error) {
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

// Control has the signature of net.Dialer.Control, so it runs after DNS and
// before connect(2), for every address the dialer tries, redirects included:
//
//	&http.Transport{DialContext: (&net.Dialer{Control: g.Control}).DialContext}
//
// (with Proxy left nil, or the proxy would be the only address judged). It
// refuses networks other than tcp, tcp4 and tcp6, addresses that do not parse
// as ip:port, and any IP CheckAddr refuses. The RawConn is not used and may
// be nil. Every error wraps ErrAddress and ErrForbidden.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return refuse(ErrAddress, "network %q is not tcp", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refuse(ErrAddress, "dial address %q is not ip:port", address)
	}
	return g.CheckAddr(ap.Addr())
}
