package urlguard

import (
	"errors"
	"net/netip"
	"testing"
)

// checkRefusal fails t unless err wraps both ErrForbidden and want.
func checkRefusal(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s = %v, want nil", what, err)
		}
		return
	}
	if !errors.Is(err, ErrForbidden) || !errors.Is(err, want) {
		t.Errorf("%s = %v, want an error wrapping %v", what, err, want)
	}
}

func TestCheckAddr(t *testing.T) {
	const pub, no = true, false
	tests := []struct {
		ip     string
		public bool
	}{
		// 0.0.0.0/8
		{"0.0.0.0", no}, {"0.255.255.255", no}, {"1.0.0.0", pub}, {"1.1.1.1", pub},
		// 10.0.0.0/8
		{"9.255.255.255", pub}, {"10.0.0.0", no}, {"10.255.255.255", no}, {"11.0.0.0", pub},
		// 100.64.0.0/10
		{"100.63.255.255", pub}, {"100.64.0.0", no}, {"100.100.100.200", no},
		{"100.127.255.255", no}, {"100.128.0.0", pub},
		// 127.0.0.0/8
		{"126.255.255.255", pub}, {"127.0.0.0", no}, {"127.0.0.1", no},
		{"127.255.255.255", no}, {"128.0.0.0", pub},
		// 169.254.0.0/16
		{"169.253.255.255", pub}, {"169.254.0.0", no}, {"169.254.169.254", no},
		{"169.254.255.255", no}, {"169.255.0.0", pub},
		// 172.16.0.0/12
		{"172.15.255.255", pub}, {"172.16.0.0", no}, {"172.31.255.255", no}, {"172.32.0.0", pub},
		// 192.0.0.0/24, 192.0.2.0/24
		{"191.255.255.255", pub}, {"192.0.0.0", no}, {"192.0.0.9", no}, {"192.0.0.10", no},
		{"192.0.0.170", no}, {"192.0.0.255", no}, {"192.0.1.0", pub}, {"192.0.1.255", pub},
		{"192.0.2.0", no}, {"192.0.2.255", no}, {"192.0.3.0", pub},
		// globally reachable special-purpose blocks stay open
		{"192.31.196.1", pub}, {"192.52.193.1", pub}, {"192.175.48.1", pub},
		// 192.88.99.0/24
		{"192.88.98.255", pub}, {"192.88.99.0", no}, {"192.88.99.255", no}, {"192.88.100.0", pub},
		// 192.168.0.0/16
		{"192.167.255.255", pub}, {"192.168.0.0", no}, {"192.168.255.255", no}, {"192.169.0.0", pub},
		// 198.18.0.0/15
		{"198.17.255.255", pub}, {"198.18.0.0", no}, {"198.19.255.255", no}, {"198.20.0.0", pub},
		// 198.51.100.0/24
		{"198.51.99.255", pub}, {"198.51.100.0", no}, {"198.51.100.255", no}, {"198.51.101.0", pub},
		// 203.0.113.0/24
		{"203.0.112.255", pub}, {"203.0.113.0", no}, {"203.0.113.255", no}, {"203.0.114.0", pub},
		// 224.0.0.0/4, 240.0.0.0/4, broadcast
		{"223.255.255.255", pub}, {"224.0.0.0", no}, {"239.255.255.255", no},
		{"240.0.0.0", no}, {"255.255.255.254", no}, {"255.255.255.255", no},
		{"93.184.215.14", pub}, {"8.8.8.8", pub},

		// IPv6 fixed addresses and outside 2000::/3
		{"::", no}, {"::1", no}, {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", no},
		{"4000::", no}, {"100::1", no}, {"100::ffff:ffff:ffff:ffff", no}, {"100:0:0:1::1", no},
		// IPv4-mapped: judged by the IPv4 address
		{"::ffff:8.8.8.8", pub}, {"::ffff:10.0.0.1", no}, {"::ffff:127.0.0.1", no},
		{"::ffff:169.254.169.254", no}, {"::ffff:0.0.0.0", no},
		// IPv4-compatible (deprecated): judged by the IPv4 address
		{"::8.8.8.8", pub}, {"::127.0.0.1", no}, {"::10.0.0.1", no}, {"::2", no},
		{"::255.255.255.255", no},
		// NAT64 well-known prefix: judged by the IPv4 address
		{"64:ff9b::8.8.8.8", pub}, {"64:ff9b::10.0.0.1", no}, {"64:ff9b::127.0.0.1", no},
		{"64:ff9b::169.254.169.254", no}, {"64:ff9b::1:0:0:1", no}, // outside the /96
		// local-use NAT64 is refused whatever it carries
		{"64:ff9b:1::8.8.8.8", no}, {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", no},
		// 2001::/23, including Teredo 2001::/32
		{"2000::1", pub}, {"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", pub},
		{"2001::", no}, {"2001::1", no}, {"2001:0:4136:e378:8000:63bf:3fff:fdd2", no},
		{"2001:1::1", no}, {"2001:2::1", no}, {"2001:20::1", no}, {"2001:30::1", no},
		{"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", no}, {"2001:200::", pub},
		{"2001:4860:4860::8888", pub},
		// 2001:db8::/32
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", pub}, {"2001:db8::", no},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", no}, {"2001:db9::", pub},
		// 6to4 2002::/16, refused even when it carries a public address
		{"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", pub}, {"2002::", no},
		{"2002:0808:0808::1", no}, {"2002:c0a8:0101::1", no},
		{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", no}, {"2003::", pub},
		{"2606:4700:4700::1111", pub}, {"2620:4f:8000::1", pub},
		// 3fff::/20
		{"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", pub}, {"3fff::", no},
		{"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", no}, {"3fff:1000::", pub},
		{"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", pub},
		// 5f00::/16, fc00::/7, fe80::/10, fec0::/10, ff00::/8
		{"5f00::1", no}, {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", no},
		{"fc00::", no}, {"fd00:ec2::254", no}, {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", no},
		{"fe80::", no}, {"fe80::1", no}, {"fe80::1%eth0", no}, {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", no},
		{"fec0::1", no}, {"ff00::", no}, {"ff02::1", no}, {"ff0e::1", no},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", no},
		// zones are ignored: the address is judged without one
		{"2606:4700:4700::1111%eth0", pub}, {"::1%lo", no}, {"::ffff:8.8.8.8%eth0", pub},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		var want error
		if !tt.public {
			want = ErrAddress
		}
		checkRefusal(t, "CheckAddr("+tt.ip+")", CheckAddr(ip), want)
		checkRefusal(t, "New().CheckAddr("+tt.ip+")", New().CheckAddr(ip), want)
		checkRefusal(t, "(*Guard)(nil).CheckAddr("+tt.ip+")", (*Guard)(nil).CheckAddr(ip), want)
		if ip.Is4() { // the mapped form must agree
			checkRefusal(t, "CheckAddr(mapped "+tt.ip+")", CheckAddr(netip.AddrFrom16(ip.As16())), want)
		}
	}
}

func TestCheckAddrZero(t *testing.T) {
	checkRefusal(t, "CheckAddr(netip.Addr{})", CheckAddr(netip.Addr{}), ErrAddress)
	allowAll := New(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	checkRefusal(t, "allow-all CheckAddr(netip.Addr{})", allowAll.CheckAddr(netip.Addr{}), ErrAddress)
}

// Every row of both tables is refused at its first and last address.
func TestCheckAddrTableEdges(t *testing.T) {
	for _, b := range append(append([]block(nil), blocked4...), blocked6...) {
		first := b.prefix.Masked().Addr()
		last := lastAddr(b.prefix)
		for _, ip := range []netip.Addr{first, last} {
			checkRefusal(t, "CheckAddr("+ip.String()+") in "+b.prefix.String(), CheckAddr(ip), ErrAddress)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	ip, _ := netip.AddrFromSlice(b)
	return ip
}

// The table must be at least as strict as the standard library.
func TestCheckAddrStricterThanStdlib(t *testing.T) {
	for _, s := range []string{
		"10.1.2.3", "172.20.0.1", "192.168.1.1", "127.0.0.53", "169.254.1.1", "0.0.0.0",
		"224.0.0.251", "255.255.255.255", "fc00::1", "fd12:3456::1", "fe80::abcd", "ff02::fb",
		"::1", "::", "ff01::1",
	} {
		ip := netip.MustParseAddr(s)
		if ip.IsGlobalUnicast() && !ip.IsPrivate() {
			t.Fatalf("test bug: %s is public to the standard library", s)
		}
		checkRefusal(t, "CheckAddr("+s+")", CheckAddr(ip), ErrAddress)
	}
}

func TestCheckAddrExempt(t *testing.T) {
	g := New(netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.9.0.0/16"))
	tests := []struct {
		ip   string
		want error
	}{
		{"127.0.0.1", nil},
		{"::ffff:127.0.0.1", nil}, // the same destination
		{"::1", nil},
		{"::1%lo", nil},
		{"10.9.255.255", nil},
		{"127.0.0.2", ErrAddress},
		{"10.10.0.0", ErrAddress},
		{"64:ff9b::127.0.0.1", ErrAddress}, // a NAT64 gateway's loopback, not ours
		{"::127.0.0.1", ErrAddress},
		{"169.254.169.254", ErrAddress},
		{"8.8.8.8", nil},
	}
	for _, tt := range tests {
		checkRefusal(t, "exempt CheckAddr("+tt.ip+")", g.CheckAddr(netip.MustParseAddr(tt.ip)), tt.want)
	}
}

func TestCheckAddrMessage(t *testing.T) {
	err := CheckAddr(netip.MustParseAddr("64:ff9b::a00:1"))
	const want = "urlguard: destination not allowed: address 64:ff9b::a00:1 carries 10.0.0.1, which is in 10.0.0.0/8 (private-use, RFC 1918)"
	if err == nil || err.Error() != want {
		t.Errorf("error text = %q, want %q", err, want)
	}
}

func TestCheckAddrDeny(t *testing.T) {
	g := NewWithOptions(Options{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2a05:d000::/32")},
		Deny: []netip.Prefix{
			netip.MustParsePrefix("93.184.215.0/24"), // our egress NAT
			netip.MustParsePrefix("2a05:d000:42::/48"),
			netip.MustParsePrefix("10.1.0.0/16"),
		},
	})
	tests := []struct {
		ip   string
		want error
	}{
		{"93.184.215.14", ErrAddress},
		{"93.184.214.255", nil},
		{"93.184.216.0", nil},
		{"::ffff:93.184.215.14", ErrAddress},
		{"64:ff9b::93.184.215.14", ErrAddress}, // a NAT64 gateway would reach our egress
		{"::93.184.215.14", ErrAddress},        // IPv4-compatible: judged by what it carries
		{"2a05:d000:42::1", ErrAddress},        // deny wins over the wider allow
		{"2a05:d000:42::1%eth0", ErrAddress},
		{"2a05:d000:43::1", nil},
		{"10.1.2.3", ErrAddress}, // deny wins over allow 10.0.0.0/8
		{"::ffff:10.1.2.3", ErrAddress},
		{"10.2.0.1", nil},
		{"8.8.8.8", nil},
		{"127.0.0.1", ErrAddress},
	}
	for _, tt := range tests {
		checkRefusal(t, "deny CheckAddr("+tt.ip+")", g.CheckAddr(netip.MustParseAddr(tt.ip)), tt.want)
	}
	err := g.CheckAddr(netip.MustParseAddr("64:ff9b::5db8:d70e"))
	const want = "urlguard: destination not allowed: address 64:ff9b::5db8:d70e carries 93.184.215.14, which is in 93.184.215.0/24 (denied by configuration)"
	if err == nil || err.Error() != want {
		t.Errorf("error text = %q, want %q", err, want)
	}
}
