package urlguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a tiny DNS server on 127.0.0.1 (UDP) that answers A and AAAA
// questions from a fixed table and records every question, so a test sees
// exactly which names the resolver asked for. Names not in the table get
// NXDOMAIN.
type dnsServer struct {
	conn    net.PacketConn
	answers map[string][]netip.Addr // fully qualified, lower case

	mu    sync.Mutex
	asked []string // "name TYPE", e.g. "hooks.example.com. A"
}

// startDNS serves answers (name without trailing dot -> addresses) until
// the test ends.
func startDNS(tb testing.TB, answers map[string][]string) *dnsServer {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &dnsServer{conn: conn, answers: map[string][]netip.Addr{}}
	for name, addrs := range answers {
		for _, a := range addrs {
			s.answers[name+"."] = append(s.answers[name+"."], netip.MustParseAddr(a))
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if resp, ok := s.answer(buf[:n]); ok {
				conn.WriteTo(resp, from)
			}
		}
	}()
	tb.Cleanup(func() { conn.Close(); <-done })
	return s
}

func (s *dnsServer) answer(req []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	s.mu.Lock()
	s.asked = append(s.asked, name+" "+strings.TrimPrefix(q.Type.String(), "Type"))
	s.mu.Unlock()

	addrs, known := s.answers[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(rr, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, false
		}
	}
	resp, err := b.Finish()
	return resp, err == nil
}

// resolver returns a pure-Go resolver that asks only s.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", s.conn.LocalAddr().String())
	}}
}

func (s *dnsServer) questions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(slices.Values(s.asked))
}

// dialRecorder is a net.Dialer ControlContext hook. It records every address
// the dialer is about to connect to, fails those in fail with the error given
// (simulating an unreachable host), and refuses everything but 127.0.0.1 and
// ::1 whatever the guard decided, so that even a broken guard sends nothing
// off this machine.
type dialRecorder struct {
	fail map[string]error // "ip:port" -> error; errBlackHole waits for the deadline

	mu   sync.Mutex
	seen []string
}

var (
	errNotLoopback = errors.New("test: only loopback may be dialled")
	errBlackHole   = errors.New("test: black hole")
)

func (r *dialRecorder) control(ctx context.Context, network, address string, _ syscall.RawConn) error {
	r.mu.Lock()
	r.seen = append(r.seen, address)
	r.mu.Unlock()
	if err := r.fail[address]; err == errBlackHole {
		<-ctx.Done()
		return ctx.Err()
	} else if err != nil {
		return err
	}
	if ap, err := netip.ParseAddrPort(address); err != nil || !ap.Addr().IsLoopback() || ap.Addr() != netip.MustParseAddr("127.0.0.1") && ap.Addr() != netip.IPv6Loopback() {
		return errNotLoopback
	}
	return nil
}

func (r *dialRecorder) dialled() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.seen))
}

// listen starts a TCP listener on 127.0.0.1 that accepts and counts
// connections until the test ends, and returns its port.
func listen(tb testing.TB) (port string, accepted *atomic.Int32) {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, accepted
}

var loopback4 = netip.MustParsePrefix("127.0.0.1/32")

func TestDialContext(t *testing.T) {
	port, accepted := listen(t)
	dns := startDNS(t, map[string][]string{
		"public.example.com":  {"93.184.215.14", "2606:4700::1111"},
		"private.example.com": {"10.0.0.1", "192.168.1.1", "fd00:ec2::254", "127.0.0.1"},
		// refused answers mixed with allowed ones that cannot be reached
		"mixed.example.com":  {"10.0.0.1", "127.0.0.1", "fd00::1"},
		"mixed6.example.com": {"2606:4700::1111", "169.254.169.254"},
		// refused answers mixed with one that works
		"works.example.com": {"10.0.0.1", "127.0.0.1", "fd00::1"},
		"local.example.com": {"127.0.0.1"},
	})
	refusedPort := map[string]error{
		"127.0.0.1:" + port:     syscall.ECONNREFUSED,
		"[2606:4700::1111]:443": syscall.ENETUNREACH,
	}
	tests := []struct {
		name    string
		guard   *Guard
		fail    map[string]error
		network string
		addr    string
		want    []error  // each must be wrapped by the error; nil: success
		not     []error  // none of these may be
		dialled []string // what reached connect(2), sorted
		asked   []string // DNS questions, sorted
	}{
		{
			name: "only public: dialled", guard: New(), network: "tcp", addr: "public.example.com:443",
			want: []error{errNotLoopback}, not: []error{ErrForbidden},
			dialled: []string{"93.184.215.14:443", "[2606:4700::1111]:443"},
			asked:   []string{"public.example.com. A", "public.example.com. AAAA"},
		},
		{
			name: "only public, tcp4", guard: New(), network: "tcp4", addr: "public.example.com:443",
			want: []error{errNotLoopback}, dialled: []string{"93.184.215.14:443"},
			asked: []string{"public.example.com. A"},
		},
		{
			name: "only private: refused, nothing dialled", guard: New(), network: "tcp", addr: "private.example.com:" + port,
			want: []error{ErrForbidden, ErrAddress}, not: []error{errNotLoopback},
			asked: []string{"private.example.com. A", "private.example.com. AAAA"},
		},
		{
			name: "private and unreachable: blocked, private not dialled", guard: New(loopback4),
			fail: refusedPort, network: "tcp", addr: "mixed.example.com:" + port,
			want:    []error{ErrForbidden, ErrAddress, syscall.ECONNREFUSED},
			dialled: []string{"127.0.0.1:" + port},
			asked:   []string{"mixed.example.com. A", "mixed.example.com. AAAA"},
		},
		{
			name: "unreachable public IPv6 first: still blocked", guard: New(), fail: refusedPort,
			network: "tcp", addr: "mixed6.example.com:443",
			want:    []error{ErrForbidden, ErrAddress, syscall.ENETUNREACH},
			dialled: []string{"[2606:4700::1111]:443"},
			asked:   []string{"mixed6.example.com. A", "mixed6.example.com. AAAA"},
		},
		{
			name: "private and working: connects to the allowed answer only", guard: New(loopback4),
			network: "tcp", addr: "works.example.com:" + port,
			dialled: []string{"127.0.0.1:" + port},
			asked:   []string{"works.example.com. A", "works.example.com. AAAA"},
		},
		{
			name: "trailing dot kept", guard: New(loopback4), network: "tcp4", addr: "LOCAL.example.com.:" + port,
			dialled: []string{"127.0.0.1:" + port}, asked: []string{"local.example.com. A"},
		},
		{
			name: "IP literal allowed", guard: New(loopback4), network: "tcp", addr: "127.0.0.1:" + port,
			dialled: []string{"127.0.0.1:" + port},
		},
		{
			name: "IP literal refused", guard: New(), network: "tcp", addr: "127.0.0.1:" + port,
			want: []error{ErrForbidden, ErrAddress},
		},
		{
			name: "IPv6 literal refused", guard: New(), network: "tcp6", addr: "[::1]:" + port,
			want: []error{ErrForbidden, ErrAddress},
		},
		{
			name: "mapped literal allowed", guard: New(loopback4), network: "tcp", addr: "[::ffff:127.0.0.1]:" + port,
			dialled: []string{"127.0.0.1:" + port},
		},
		{
			name: "name rules apply at dial time", guard: New(loopback4), network: "tcp", addr: "redis.default:6379",
			want: []error{ErrForbidden, ErrInternalName},
		},
		{
			name: "metadata name", guard: New(), network: "tcp", addr: "metadata.google.internal:80",
			want: []error{ErrForbidden, ErrMetadata},
		},
		{
			name: "public suffix", guard: New(), network: "tcp", addr: "co.uk:443",
			want: []error{ErrForbidden, ErrPublicSuffix},
		},
		{
			name: "port not allowed: no DNS", guard: NewWithOptions(Options{AllowedPorts: []uint16{443}}),
			network: "tcp", addr: "public.example.com:8443", want: []error{ErrForbidden, ErrPort},
		},
		{
			name: "port allowed", guard: NewWithOptions(Options{Allow: []netip.Prefix{loopback4}, AllowedPorts: []uint16{1, 65535, mustPort(port)}}),
			network: "tcp4", addr: "local.example.com:" + port,
			dialled: []string{"127.0.0.1:" + port}, asked: []string{"local.example.com. A"},
		},
		{
			name: "denied answer dropped", fail: refusedPort, network: "tcp", addr: "mixed6.example.com:443",
			guard: NewWithOptions(Options{Deny: []netip.Prefix{netip.MustParsePrefix("2606:4700::/32")}}),
			want:  []error{ErrForbidden, ErrAddress}, not: []error{syscall.ENETUNREACH},
			asked: []string{"mixed6.example.com. A", "mixed6.example.com. AAAA"},
		},
		{name: "named port", guard: New(), network: "tcp", addr: "public.example.com:https", want: []error{ErrForbidden, ErrPort}},
		{name: "port 0", guard: New(), network: "tcp", addr: "public.example.com:0", want: []error{ErrForbidden, ErrPort}},
		{name: "udp", guard: New(loopback4), network: "udp", addr: "127.0.0.1:53", want: []error{ErrForbidden, ErrAddress}},
		{name: "no port", guard: New(), network: "tcp", addr: "public.example.com", want: []error{ErrForbidden, ErrAddress}},
		{name: "nil Guard", guard: nil, network: "tcp", addr: "127.0.0.1:" + port, want: []error{ErrForbidden, ErrAddress}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dns.mu.Lock()
			dns.asked = nil
			dns.mu.Unlock()
			rec := &dialRecorder{fail: tt.fail}
			d := &net.Dialer{Timeout: 5 * time.Second, Resolver: dns.resolver(), ControlContext: rec.control}
			before := accepted.Load()

			c, err := tt.guard.DialContext(d)(context.Background(), tt.network, tt.addr)
			if c != nil {
				c.Close()
			}
			if tt.want == nil && err != nil {
				t.Errorf("dial error = %v, want success", err)
			}
			if tt.want != nil && err == nil {
				t.Errorf("dial succeeded, want an error wrapping %v", tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("dial error = %v, want it to wrap %q", err, w)
				}
			}
			for _, n := range tt.not {
				if errors.Is(err, n) {
					t.Errorf("dial error = %v wraps %q", err, n)
				}
			}
			if got := rec.dialled(); !slices.Equal(got, tt.dialled) {
				t.Errorf("dialled %q, want %q", got, tt.dialled)
			}
			if got := dns.questions(); !slices.Equal(got, tt.asked) {
				t.Errorf("DNS questions %q, want %q", got, tt.asked)
			}
			// Refused and failed dials stop before connect(2).
			wantConns := int32(0)
			if tt.want == nil {
				wantConns = 1
			}
			waitFor(t, func() bool { return accepted.Load()-before == wantConns })
		})
	}
}

func mustPort(s string) uint16 {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		panic(err)
	}
	return uint16(n)
}

// waitFor polls cond for up to two seconds.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 2s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The resolver is handed the fully qualified name: search domains
// (resolv.conf, Kubernetes' ndots:5) cannot apply. Go's resolver echoes the
// name it was asked for in its *net.DNSError, and the server sees only the
// name itself, never a search-domain expansion.
func TestDialContextFullyQualified(t *testing.T) {
	dns := startDNS(t, nil)
	rec := &dialRecorder{}
	d := &net.Dialer{Timeout: 5 * time.Second, Resolver: dns.resolver(), ControlContext: rec.control}
	for _, host := range []string{"nowhere.example.com", "nowhere.example.com.", "NoWhere.Example.COM"} {
		_, err := New().DialContext(d)(context.Background(), "tcp4", host+":443")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Fatalf("dial %s: error %v, want a *net.DNSError not found", host, err)
		}
		if !strings.HasSuffix(dnsErr.Name, ".") {
			t.Errorf("dial %s: the resolver was asked for %q, want a trailing dot", host, dnsErr.Name)
		}
		if errors.Is(err, ErrForbidden) {
			t.Errorf("dial %s: NXDOMAIN reported as a refusal: %v", host, err)
		}
	}
	for _, q := range dns.questions() {
		if strings.ToLower(q) != "nowhere.example.com. a" {
			t.Errorf("DNS question %q, want only nowhere.example.com. A", q)
		}
	}
	if got := rec.dialled(); len(got) != 0 {
		t.Errorf("dialled %q after NXDOMAIN", got)
	}
}

// A slow first family does not hold the dial up: the other family is tried
// after FallbackDelay, as net.Dialer does.
func TestDialContextFallback(t *testing.T) {
	port, accepted := listen(t)
	dns := startDNS(t, map[string][]string{"dual.example.com": {"::1", "127.0.0.1"}})
	guard := New(loopback4, netip.MustParsePrefix("::1/128"))
	for _, tt := range []struct {
		name string
		fail error
	}{
		{"IPv6 refused", syscall.ECONNREFUSED},
		{"IPv6 black hole", errBlackHole},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := accepted.Load()
			// Both families fail alike whichever the resolver puts first.
			rec := &dialRecorder{fail: map[string]error{"[::1]:" + port: tt.fail}}
			d := &net.Dialer{Timeout: 10 * time.Second, FallbackDelay: 50 * time.Millisecond,
				Resolver: dns.resolver(), ControlContext: rec.control}
			start := time.Now()
			c, err := guard.DialContext(d)(context.Background(), "tcp", "dual.example.com:"+port)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.Close()
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("dial took %v: the fallback did not start", took)
			}
			if got, want := rec.dialled(), []string{"127.0.0.1:" + port, "[::1]:" + port}; !slices.Equal(got, want) {
				t.Errorf("dialled %q, want %q", got, want)
			}
			waitFor(t, func() bool { return accepted.Load()-before == 1 })
		})
	}
}

// The dialer's own Control hook still runs, and g.Control runs after it on
// every connect(2), whatever DialContext decided before.
func TestDialContextControlBackstop(t *testing.T) {
	var own []string
	hook := func(network, address string, _ syscall.RawConn) error {
		own = append(own, address)
		return nil
	}
	control := New().controlAfter(hook, nil)
	checkRefusal(t, "backstop(10.0.0.1:443)", control(context.Background(), "tcp4", "10.0.0.1:443", nil), ErrAddress)
	if err := control(context.Background(), "tcp4", "8.8.8.8:443", nil); err != nil {
		t.Errorf("backstop(8.8.8.8:443) = %v", err)
	}
	if want := []string{"10.0.0.1:443", "8.8.8.8:443"}; !slices.Equal(own, want) {
		t.Errorf("own hook saw %q, want %q", own, want)
	}
	errOwn := errors.New("own hook refuses")
	control = New().controlAfter(hook, func(context.Context, string, string, syscall.RawConn) error { return errOwn })
	if err := control(context.Background(), "tcp4", "8.8.8.8:443", nil); err != errOwn {
		t.Errorf("with ControlContext set: %v, want the ControlContext error (Control is ignored, as net.Dialer does)", err)
	}
	checkRefusal(t, "no own hook", New().controlAfter(nil, nil)(context.Background(), "tcp6", "[::1]:443", nil), ErrAddress)

	// DialContext leaves the caller's dialer alone.
	d := &net.Dialer{Control: hook}
	New().DialContext(d)
	if d.ControlContext != nil || d.Control == nil {
		t.Error("DialContext modified the dialer it was given")
	}
}

// Through net/http, as the dispatcher wires it: the TLS name is the URL's
// (the test certificate covers *.example.com, never "example.com."), and a
// refused answer is never connected to.
func TestDialContextHTTP(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	if ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Skipf("test server is on %s, not 127.0.0.1", ap.Addr())
	}
	dns := startDNS(t, map[string][]string{"hooks.example.com": {"10.0.0.1", "127.0.0.1", "fd00::1"}})
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig

	post := func(g *Guard) (*http.Response, error) {
		rec := &dialRecorder{}
		d := &net.Dialer{Timeout: 5 * time.Second, Resolver: dns.resolver(), ControlContext: rec.control}
		client := &http.Client{Transport: &http.Transport{DialContext: g.DialContext(d), TLSClientConfig: tlsConfig.Clone()}}
		defer client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://hooks.example.com:"+strconv.Itoa(int(ap.Port()))+"/hook", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if resp != nil {
			resp.Body.Close()
		}
		for _, a := range rec.dialled() {
			if a != ap.String() {
				t.Errorf("dialled %s", a)
			}
		}
		return resp, err
	}

	if _, err := post(New()); !errors.Is(err, ErrForbidden) {
		t.Errorf("default Guard: error %v, want ErrForbidden", err)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("server saw %d connections from the default Guard", n)
	}
	resp, err := post(New(loopback4))
	if err != nil {
		t.Fatalf("with 127.0.0.1/32 exempt: %v", err)
	}
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d, want %d", resp.StatusCode, http.StatusNoContent)
	}
}

func TestResolve(t *testing.T) {
	dns := startDNS(t, map[string][]string{
		"mixed.example.com":   {"10.0.0.1", "8.8.8.8", "2606:4700::1111", "fd00::1", "8.8.4.4"},
		"private.example.com": {"10.0.0.1", "fd00::1"},
		"v4only.example.com":  {"8.8.8.8"},
	})
	r := dns.resolver()
	ctx := context.Background()
	tests := []struct {
		network, host string
		want          []string
		err           error
	}{
		{"ip", "mixed.example.com", []string{"2606:4700::1111", "8.8.4.4", "8.8.8.8"}, nil},
		{"ip4", "mixed.example.com", []string{"8.8.4.4", "8.8.8.8"}, nil},
		{"ip6", "Mixed.Example.com.", []string{"2606:4700::1111"}, nil},
		{"ip", "private.example.com", nil, ErrAddress},
		{"ip6", "v4only.example.com", nil, nil}, // not found: a *net.DNSError
		{"ip", "93.184.215.14", []string{"93.184.215.14"}, nil},
		{"ip", "::ffff:93.184.215.14", []string{"93.184.215.14"}, nil},
		{"ip", "10.0.0.1", nil, ErrAddress},
		{"ip", "redis.default", nil, ErrInternalName},
		{"ip", "localhost", nil, ErrInternalName},
		{"ip", "[2606:4700::1111]", nil, ErrHost}, // a URL's spelling, not a host
	}
	for _, tt := range tests {
		got, err := New().Resolve(ctx, r, tt.network, tt.host)
		var gotS []string
		for _, a := range got {
			gotS = append(gotS, a.String())
		}
		slices.Sort(gotS)
		if !slices.Equal(gotS, tt.want) {
			t.Errorf("Resolve(%s, %s) = %v, want %v", tt.network, tt.host, gotS, tt.want)
		}
		switch {
		case tt.err != nil:
			checkRefusal(t, "Resolve("+tt.network+", "+tt.host+")", err, tt.err)
		case tt.want == nil:
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				t.Errorf("Resolve(%s, %s) error = %v, want a *net.DNSError not found", tt.network, tt.host, err)
			}
		case err != nil:
			t.Errorf("Resolve(%s, %s) error = %v", tt.network, tt.host, err)
		}
	}
	if _, err := New().Resolve(ctx, r, "tcp", "example.com"); err == nil {
		t.Error("Resolve with network tcp: no error")
	}
	for network, n := range map[string]string{"ip4": "1 of 1", "ip": "2 of 2"} {
		_, err := New().Resolve(ctx, r, network, "private.example.com")
		want := "urlguard: destination not allowed: host private.example.com has no allowed address (" + n + " refused; first: address "
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Resolve(%s, private.example.com) error = %v, want it to start %q", network, err, want)
		}
	}
}
