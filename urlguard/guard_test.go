package urlguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

var reasons = []error{
	ErrTooLong, ErrCharacters, ErrScheme, ErrHost, ErrUserinfo, ErrPort,
	ErrInternalName, ErrPublicSuffix, ErrMetadata, ErrAddress, ErrAmbiguousIP,
}

func countReasons(err error) int {
	n := 0
	for _, r := range reasons {
		if errors.Is(err, r) {
			n++
		}
	}
	return n
}

func TestReasonsWrapForbidden(t *testing.T) {
	for _, r := range reasons {
		if !errors.Is(r, ErrForbidden) {
			t.Errorf("%v does not wrap ErrForbidden", r)
		}
		if countReasons(r) != 1 {
			t.Errorf("%v matches more than one reason", r)
		}
	}
}

func TestParseAllowList(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"   ", nil, false},
		{" , ,", nil, false},
		{"127.0.0.1/32", []string{"127.0.0.1/32"}, false},
		{"127.0.0.1/32,::1/128", []string{"127.0.0.1/32", "::1/128"}, false},
		{" 127.0.0.1/32 ,\t::1/128 \n", []string{"127.0.0.1/32", "::1/128"}, false},
		{"127.0.0.1/32,", []string{"127.0.0.1/32"}, false},
		{"127.0.0.1", []string{"127.0.0.1/32"}, false},
		{"::1", []string{"::1/128"}, false},
		{"10.0.0.0/8, 192.168.1.7", []string{"10.0.0.0/8", "192.168.1.7/32"}, false},
		{"fd00::/8", []string{"fd00::/8"}, false},
		{"10.0.0.1/8", nil, true}, // host bits set: probably meant /32
		{"127.0.0.1/33", nil, true},
		{"localhost", nil, true},
		{"127.1", nil, true},
		{"0177.0.0.1", nil, true},
		{"fe80::1%eth0", nil, true},
		{"fe80::1%eth0/128", nil, true},
		{"127.0.0.1/32 ::1/128", nil, true},
		{"127.0.0.1/32;::1/128", nil, true},
		{"127.0.0.1/32,bogus", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseAllowList(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseAllowList(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, p.String())
		}
		if !slices.Equal(gotS, tt.want) {
			t.Errorf("ParseAllowList(%q) = %v, want %v", tt.in, gotS, tt.want)
		}
		if tt.in == "" && got != nil {
			t.Errorf("ParseAllowList(\"\") = %#v, want nil", got)
		}
	}
}

func TestParseAllowListErrorNamesItem(t *testing.T) {
	_, err := ParseAllowList("127.0.0.1/32, 10.0.0.1/8")
	const want = `urlguard: allow list item 2 "10.0.0.1/8": has host bits set; did you mean 10.0.0.0/8?`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if errors.Is(err, ErrForbidden) {
		t.Errorf("a configuration error must not look like a refusal: %v", err)
	}
}

func TestAllowed(t *testing.T) {
	if got := (*Guard)(nil).Allowed(); got != nil {
		t.Errorf("nil Guard Allowed() = %v, want nil", got)
	}
	if got := New().Allowed(); got != nil {
		t.Errorf("New().Allowed() = %v, want nil", got)
	}
	if got := (&Guard{}).Allowed(); got != nil {
		t.Errorf("zero Guard Allowed() = %v, want nil", got)
	}
	g := New(netip.MustParsePrefix("127.0.0.1/32"), netip.Prefix{}, netip.MustParsePrefix("10.1.2.3/8"))
	got := g.Allowed()
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	if !slices.Equal(got, want) {
		t.Fatalf("Allowed() = %v, want %v", got, want)
	}
	got[0] = netip.MustParsePrefix("0.0.0.0/0") // a copy: the Guard must not change
	if err := g.CheckAddr(netip.MustParseAddr("8.8.4.4")); err != nil {
		t.Fatal(err)
	}
	if err := g.CheckAddr(netip.MustParseAddr("192.168.0.1")); !errors.Is(err, ErrAddress) {
		t.Errorf("exemptions changed through Allowed(): %v", err)
	}
}

// Control is called directly: nothing is dialled.
func TestControl(t *testing.T) {
	def := New()
	local := New(netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"))
	tests := []struct {
		g       *Guard
		network string
		address string
		want    error
	}{
		{def, "tcp4", "127.0.0.1:443", ErrAddress},
		{def, "tcp6", "[::1]:443", ErrAddress},
		{def, "tcp", "10.0.0.1:443", ErrAddress},
		{def, "tcp4", "169.254.169.254:80", ErrAddress},
		{def, "tcp6", "[::ffff:169.254.169.254]:80", ErrAddress},
		{def, "tcp6", "[fe80::1%eth0]:443", ErrAddress},
		{def, "tcp6", "[64:ff9b::a9fe:a9fe]:443", ErrAddress},
		{def, "tcp4", "93.184.215.14:443", nil},
		{def, "tcp6", "[2606:4700:4700::1111]:443", nil},
		{def, "tcp", "93.184.215.14:443", nil},
		{nil, "tcp4", "93.184.215.14:443", nil},
		{nil, "tcp4", "127.0.0.1:443", ErrAddress},
		{&Guard{}, "tcp4", "127.0.0.1:443", ErrAddress},
		// unparsable addresses
		{def, "tcp4", "example.com:443", ErrAddress},
		{def, "tcp4", "93.184.215.14", ErrAddress},
		{def, "tcp4", "", ErrAddress},
		{def, "tcp4", "0x7f.1:443", ErrAddress},
		{def, "tcp6", "::1:443", ErrAddress},
		{local, "tcp4", "localhost:443", ErrAddress},
		// networks other than TCP
		{def, "udp4", "93.184.215.14:443", ErrAddress},
		{def, "udp", "8.8.8.8:53", ErrAddress},
		{def, "unix", "/var/run/docker.sock", ErrAddress},
		{def, "ip4:icmp", "93.184.215.14", ErrAddress},
		{def, "", "93.184.215.14:443", ErrAddress},
		{def, "TCP", "93.184.215.14:443", ErrAddress},
		{local, "udp4", "127.0.0.1:53", ErrAddress},
		// exemptions
		{local, "tcp4", "127.0.0.1:8443", nil},
		{local, "tcp6", "[::1]:8443", nil},
		{local, "tcp6", "[::ffff:127.0.0.1]:8443", nil},
		{local, "tcp4", "127.0.0.2:8443", ErrAddress},
		{local, "tcp4", "10.0.0.1:443", ErrAddress},
	}
	for _, tt := range tests {
		err := tt.g.Control(tt.network, tt.address, nil)
		checkRefusal(t, "Control("+tt.network+", "+tt.address+")", err, tt.want)
	}
}

// TestDialLocal dials only a local httptest server (127.0.0.1, or ::1 where
// there is no IPv4 loopback). The default Guard must refuse before
// connect(2): the server sees no connection at all.
func TestDialLocal(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	if ap := netip.MustParseAddrPort(addr); !ap.Addr().IsLoopback() {
		t.Fatalf("test server is not on loopback: %s", addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	d := net.Dialer{Control: New().Control}
	if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Fatal("dial to loopback with the default Guard succeeded")
	} else if !errors.Is(err, ErrForbidden) || !errors.Is(err, ErrAddress) {
		t.Fatalf("dial error = %v, want ErrForbidden and ErrAddress", err)
	}

	// The same through an http.Client, as the dispatcher builds it.
	client := func(g *Guard) *http.Client {
		return &http.Client{Transport: &http.Transport{
			DialContext: (&net.Dialer{Control: g.Control}).DialContext,
		}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := client(New()).Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request to loopback with the default Guard succeeded")
	} else if !errors.Is(err, ErrForbidden) {
		t.Fatalf("request error = %v, want ErrForbidden", err)
	}

	local := New(netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128"))
	resp, err := client(local).Do(req)
	if err != nil {
		t.Fatalf("request with 127.0.0.1/32 and ::1/128 exempt: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status = %d, want %d", resp.StatusCode, http.StatusNoContent)
	}
	// The server accepts connections in order, so by the time the allowed
	// request is answered any earlier connection would have been counted.
	if n := conns.Load(); n != 1 {
		t.Errorf("server saw %d connections, want 1 (the refused dials must not connect)", n)
	}
}

func TestParseDenyList(t *testing.T) {
	got, err := ParseDenyList(" 203.0.113.0/24 , 2001:db8:42::/48,198.51.100.7 ")
	want := []netip.Prefix{
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:42::/48"),
		netip.MustParsePrefix("198.51.100.7/32"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseDenyList = %v, %v; want %v", got, err, want)
	}
	if got, err := ParseDenyList(" , "); got != nil || err != nil {
		t.Errorf("ParseDenyList(\" , \") = %v, %v; want nil, nil", got, err)
	}
	_, err = ParseDenyList("203.0.113.0/24, 203.0.113.9/24")
	const wantErr = `urlguard: deny list item 2 "203.0.113.9/24": has host bits set; did you mean 203.0.113.0/24?`
	if err == nil || err.Error() != wantErr {
		t.Errorf("error = %v, want %q", err, wantErr)
	}
	if errors.Is(err, ErrForbidden) {
		t.Errorf("a configuration error must not look like a refusal: %v", err)
	}
}

func TestParsePortList(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{"", nil, false},
		{" , ", nil, false},
		{"443", []uint16{443}, false},
		{"443,8443", []uint16{443, 8443}, false},
		{" 8443 ,\t443, ", []uint16{8443, 443}, false},
		{"1,65535", []uint16{1, 65535}, false},
		{"443,443", []uint16{443, 443}, false},
		{"0", nil, true},
		{"65536", nil, true},
		{"0443", nil, true},
		{"+443", nil, true},
		{"-1", nil, true},
		{"https", nil, true},
		{"443 8443", nil, true},
		{"443;8443", nil, true},
		{"0x1bb", nil, true},
		{"4_43", nil, true},
	}
	for _, tt := range tests {
		got, err := ParsePortList(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePortList(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && errors.Is(err, ErrForbidden) {
			t.Errorf("ParsePortList(%q): a configuration error must not look like a refusal: %v", tt.in, err)
		}
	}
}

func TestNewWithOptions(t *testing.T) {
	g := NewWithOptions(Options{
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), {}},
		Deny:         []netip.Prefix{netip.MustParsePrefix("203.0.113.9/24"), {}},
		AllowedPorts: []uint16{8443, 0, 443, 8443},
	})
	if got, want := g.Allowed(), []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}; !slices.Equal(got, want) {
		t.Errorf("Allowed() = %v, want %v", got, want)
	}
	if got, want := g.Denied(), []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}; !slices.Equal(got, want) {
		t.Errorf("Denied() = %v, want %v", got, want)
	}
	if got, want := g.AllowedPorts(), []uint16{443, 8443}; !slices.Equal(got, want) {
		t.Errorf("AllowedPorts() = %v, want %v", got, want)
	}
	g.AllowedPorts()[0] = 1 // a copy
	if err := g.Control("tcp4", "8.8.8.8:1", nil); !errors.Is(err, ErrPort) {
		t.Errorf("port list changed through AllowedPorts(): %v", err)
	}
	for _, g := range []*Guard{nil, {}, New(), NewWithOptions(Options{})} {
		if g.Denied() != nil || g.AllowedPorts() != nil {
			t.Errorf("%#v: Denied() = %v, AllowedPorts() = %v; want nil", g, g.Denied(), g.AllowedPorts())
		}
	}
}

// Control is called directly: nothing is dialled.
func TestControlDenyAndPorts(t *testing.T) {
	g := NewWithOptions(Options{
		Allow:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Deny:         []netip.Prefix{netip.MustParsePrefix("93.184.215.0/24"), netip.MustParsePrefix("127.0.0.1/32")},
		AllowedPorts: []uint16{443, 8443},
	})
	tests := []struct {
		network, address string
		want             error
	}{
		{"tcp4", "8.8.8.8:443", nil},
		{"tcp6", "[2606:4700:4700::1111]:8443", nil},
		{"tcp4", "8.8.8.8:80", ErrPort},
		{"tcp4", "8.8.8.8:22", ErrPort},
		{"tcp4", "93.184.215.14:443", ErrAddress},
		{"tcp6", "[::ffff:93.184.215.14]:443", ErrAddress},
		{"tcp6", "[64:ff9b::93.184.215.14]:443", ErrAddress},
		{"tcp4", "127.0.0.1:443", ErrAddress}, // allowed and denied: deny wins
		{"tcp4", "10.0.0.1:22", ErrAddress},   // the address is judged first
	}
	for _, tt := range tests {
		checkRefusal(t, "Control("+tt.network+", "+tt.address+")", g.Control(tt.network, tt.address, nil), tt.want)
	}
}
