package urlguard

import (
	"fmt"
	"net/netip"
)

// block is one refused range; what says why, with its RFC, for the error text.
type block struct {
	prefix netip.Prefix
	what   string
}

func row(cidr, what string) block { return block{netip.MustParsePrefix(cidr), what} }

// blocked4 holds every IPv4 range the IANA IPv4 Special-Purpose Address
// Registry marks not globally reachable, plus multicast (which has its own
// registry). Ranges it marks globally reachable, and therefore left open, are
// 192.31.196.0/24 (AS112-v4, RFC 7535), 192.52.193.0/24 (AMT, RFC 7450) and
// 192.175.48.0/24 (AS112 direct delegation, RFC 7534).
var blocked4 = []block{
	row("0.0.0.0/8", `"this network", RFC 791`), // 0.0.0.0 reaches the local host on Linux
	row("10.0.0.0/8", "private-use, RFC 1918"),
	row("100.64.0.0/10", "shared address space (CGNAT), RFC 6598"), // also Alibaba metadata 100.100.100.200
	row("127.0.0.0/8", "loopback, RFC 1122"),
	row("169.254.0.0/16", "link-local, RFC 3927"), // cloud metadata 169.254.169.254
	row("172.16.0.0/12", "private-use, RFC 1918"),
	// IETF protocol assignments, RFC 6890: holds DS-Lite 192.0.0.0/29
	// (RFC 7335), the dummy address 192.0.0.8 (RFC 7600) and NAT64
	// discovery 192.0.0.170-171 (RFC 7050). The registry marks 192.0.0.9
	// (PCP anycast) and 192.0.0.10 (TURN anycast) globally reachable, but
	// no webhook lives there: the whole /24 is refused.
	row("192.0.0.0/24", "IETF protocol assignments, RFC 6890"),
	row("192.0.2.0/24", "documentation (TEST-NET-1), RFC 5737"),
	row("192.88.99.0/24", "deprecated 6to4 relay anycast, RFC 7526"),
	row("192.168.0.0/16", "private-use, RFC 1918"),
	row("198.18.0.0/15", "benchmarking, RFC 2544"),
	row("198.51.100.0/24", "documentation (TEST-NET-2), RFC 5737"),
	row("203.0.113.0/24", "documentation (TEST-NET-3), RFC 5737"),
	row("224.0.0.0/4", "multicast, RFC 5771"),
	row("240.0.0.0/4", "reserved, RFC 1112"),
	row("255.255.255.255/32", "limited broadcast, RFC 919"), // inside 240/4; listed as the registry does
}

// blocked6 holds every IPv6 range the IANA IPv6 Special-Purpose Address
// Registry marks not globally reachable, plus ranges outside it that are never
// a public unicast destination. Anything outside 2000::/3 is refused
// afterwards anyway; rows outside it are listed so the error can say what the
// address is. The transition prefixes that carry an IPv4 address
// (::ffff:0:0/96, ::/96, 64:ff9b::/96) are not rows: CheckAddr judges the
// IPv4 address inside them instead.
var blocked6 = []block{
	row("::/128", "unspecified, RFC 4291"),
	row("::1/128", "loopback, RFC 4291"),
	row("64:ff9b:1::/48", "local-use IPv4/IPv6 translation, RFC 8215"),
	row("100::/64", "discard-only, RFC 6666"),
	// Specific rows first so the error names them; 2001::/23 covers them.
	row("2001::/32", "Teredo, RFC 4380"),
	row("2001:2::/48", "benchmarking, RFC 5180"),
	row("2001:10::/28", "deprecated ORCHID, RFC 4843"),
	row("2001:20::/28", "ORCHIDv2, RFC 7343"),
	// IETF protocol assignments, RFC 2928. The registry marks a few blocks
	// inside it globally reachable (PCP/TURN anycast 2001:1::1-3, AMT
	// 2001:3::/32, AS112-v6 2001:4:112::/48, ORCHIDv2, drone remote ID
	// 2001:30::/28); none is a webhook receiver, so the whole /23 is refused.
	// Its edge matters: 2001:200::/23 and 2001:4860:: are ordinary RIR space.
	row("2001::/23", "IETF protocol assignments, RFC 2928"),
	row("2001:db8::/32", "documentation, RFC 3849"),
	// 6to4 carries an IPv4 address too, but its relays are deprecated
	// (RFC 7526) and the embedded address is easy to aim inward: refused.
	row("2002::/16", "6to4, RFC 3056"),
	row("3fff::/20", "documentation, RFC 9637"),
	row("5f00::/16", "SRv6 SIDs, RFC 9602"),
	row("fc00::/7", "unique local, RFC 4193"), // AWS metadata fd00:ec2::254
	row("fe80::/10", "link-local, RFC 4291"),
	row("fec0::/10", "deprecated site-local, RFC 3879"),
	row("ff00::/8", "multicast, RFC 4291"),
}

var (
	// globalUnicast6 is the only IPv6 space IANA allocates for global
	// unicast (RFC 4291 section 2.4); everything else is refused.
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	// Transition prefixes whose low 32 bits are an IPv4 destination.
	mapped4   = netip.MustParsePrefix("::ffff:0:0/96") // IPv4-mapped, RFC 4291
	compat4   = netip.MustParsePrefix("::/96")         // deprecated IPv4-compatible, RFC 4291
	wellKnown = netip.MustParsePrefix("64:ff9b::/96")  // NAT64 well-known prefix, RFC 6052
)

// CheckAddr returns nil if ip is a public unicast address under the default
// policy, and otherwise an error wrapping ErrAddress (and ErrForbidden). The
// zero Addr is refused. A zone (fe80::1%eth0) is ignored: the address is
// judged without it. IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96)
// addresses are judged by the IPv4 address they carry.
func CheckAddr(ip netip.Addr) error { return (*Guard)(nil).CheckAddr(ip) }

// CheckAddr is the package-level CheckAddr, except that an address inside
// one of g's denied prefixes is refused, and otherwise an address inside one
// of g's exempt prefixes is allowed: deny wins. An IPv4-mapped address is
// exempt when its IPv4 form is: ::ffff:127.0.0.1 is 127.0.0.1. The IPv4
// address inside NAT64 or IPv4-compatible addresses is not: a gateway would
// connect to it, not us. For the same reason that IPv4 address is denied
// when it falls in a denied prefix.
func (g *Guard) CheckAddr(ip netip.Addr) error {
	if !ip.IsValid() {
		return refuse(ErrAddress, "invalid (zero) IP address")
	}
	ip = ip.WithZone("") // prefixes never contain zoned addresses
	if why := g.denied(ip); why != "" {
		return refuse(ErrAddress, "address %s %s", ip, why)
	}
	if g.exempt(ip) || g.exempt(ip.Unmap()) {
		return nil
	}
	if why := judge(ip); why != "" {
		return refuse(ErrAddress, "address %s %s", ip, why)
	}
	return nil
}

// denied returns why ip (without zone) falls in one of g's denied
// prefixes, or "" if it does not. The IPv4 address an IPv4-mapped,
// IPv4-compatible or NAT64 address carries is matched too.
func (g *Guard) denied(ip netip.Addr) string {
	if g == nil || len(g.deny) == 0 {
		return ""
	}
	const what = "denied by configuration"
	for _, p := range g.deny {
		if p.Contains(ip) {
			return fmt.Sprintf("is in %s (%s)", p, what)
		}
	}
	if v4, ok := carried4(ip); ok {
		for _, p := range g.deny {
			if p.Contains(v4) {
				return fmt.Sprintf("carries %s, which is in %s (%s)", v4, p, what)
			}
		}
	}
	return ""
}

// carried4 returns the IPv4 address inside an IPv4-mapped, IPv4-compatible
// or NAT64 well-known-prefix address.
func carried4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	for _, p := range [...]netip.Prefix{mapped4, compat4, wellKnown} {
		if p.Contains(ip) {
			b := ip.As16()
			return netip.AddrFrom4([4]byte(b[12:])), true
		}
	}
	return netip.Addr{}, false
}

// judge returns why ip (without zone) is not public unicast, or "" if it is.
func judge(ip netip.Addr) string {
	if ip.Is4() {
		return judge4(ip)
	}
	if b, ok := find(blocked6, ip); ok {
		return fmt.Sprintf("is in %s (%s)", b.prefix, b.what)
	}
	if v4, ok := carried4(ip); ok {
		if why := judge4(v4); why != "" {
			return fmt.Sprintf("carries %s, which %s", v4, why)
		}
		return ""
	}
	if !globalUnicast6.Contains(ip) {
		return fmt.Sprintf("is outside %s (IPv6 global unicast, RFC 4291)", globalUnicast6)
	}
	return backstop(ip)
}

func judge4(ip netip.Addr) string {
	if b, ok := find(blocked4, ip); ok {
		return fmt.Sprintf("is in %s (%s)", b.prefix, b.what)
	}
	return backstop(ip)
}

// backstop repeats the standard library's own classification after the
// tables, so that a mistake in a table can only ever let fewer addresses
// through, never more than Go itself would call private or special.
func backstop(ip netip.Addr) string {
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast() || ip.IsUnspecified() {
		return "is not global unicast"
	}
	return ""
}

func find(rows []block, ip netip.Addr) (block, bool) {
	for _, b := range rows {
		if b.prefix.Contains(ip) {
			return b, true
		}
	}
	return block{}, false
}
