package urlguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DialContext returns a function for http.Transport.DialContext that dials
// through d (nil means a zero net.Dialer) and lets it reach only addresses g
// allows:
//
//	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
//	transport := &http.Transport{DialContext: g.DialContext(dialer)} // Proxy nil
//
// For addr "host:port" it:
//
//   - refuses networks other than tcp, tcp4 and tcp6, a port that is not a
//     decimal number in 1-65535, and a port outside g's allowed ports;
//   - judges an IP-literal host with CheckAddr, and a name with the same
//     rules as CheckURL (public suffix, internal and metadata names), so URLs
//     registered before a rule existed are judged by it too;
//   - resolves a name fully qualified (with a trailing dot) through
//     d.Resolver (nil means net.DefaultResolver), so resolv.conf search
//     domains (Kubernetes' ndots:5) never apply; the TLS ServerName is not
//     affected, since net/http takes it from the URL;
//   - judges every answer, drops the refused ones and, when none is left,
//     returns an error wrapping ErrAddress (and ErrForbidden) without
//     connecting anywhere;
//   - dials the allowed answers in the resolver's order, falling back to the
//     next on failure and racing the other address family after
//     d.FallbackDelay (300 ms when zero; negative disables the race), as
//     net.Dialer does. d.Timeout and d.Deadline bound resolution and all
//     attempts together, and each attempt gets a share of what is left.
//
// If every allowed answer fails and some answers were refused, the error
// wraps both the dial error and the refusal, so errors.Is(err, ErrForbidden)
// holds: a name whose answers mix refused and unreachable addresses is
// reported as blocked whichever order the answers came in, never as a
// connection failure. Only when ctx itself is cancelled is the plain dial
// error returned. A name that resolves but has no address of the wanted
// family gets a *net.DNSError (IsNotFound); resolver errors are returned
// wrapped, so errors.As finds their *net.DNSError.
//
// Every connect(2) also passes through g.Control, after d's own Control or
// ControlContext if it has one, so the address actually connected to is
// judged even if this function had a bug. d itself is not modified.
func (g *Guard) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var dd net.Dialer
	if d != nil {
		dd = *d
	}
	dd.ControlContext = g.controlAfter(dd.Control, dd.ControlContext)
	dd.Control = nil
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return g.dial(ctx, &dd, network, addr)
	}
}

// controlAfter returns a ControlContext that runs the dialer's own hook, if
// any, then g.Control.
func (g *Guard) controlAfter(own func(string, string, syscall.RawConn) error,
	ownCtx func(context.Context, string, string, syscall.RawConn) error,
) func(context.Context, string, string, syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		var err error
		switch {
		case ownCtx != nil: // net.Dialer ignores Control when ControlContext is set
			err = ownCtx(ctx, network, address, c)
		case own != nil:
			err = own(network, address, c)
		}
		if err != nil {
			return err
		}
		return g.Control(network, address, c)
	}
}

func (g *Guard) dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	wrap := func(err error) error { return fmt.Errorf("dial %s %s: %w", network, addr, err) }
	if !isTCP(network) {
		return nil, wrap(refuse(ErrAddress, "network %q is not tcp", network))
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, wrap(refuse(ErrAddress, "dial address %q is not host:port", addr))
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, wrap(refuse(ErrPort, "dial port %q is not a number in 1-65535", portText))
	}
	if err := g.checkPortAllowed(uint16(port), fmt.Sprintf("port %d", port)); err != nil {
		return nil, wrap(err)
	}

	// One deadline for resolution and every attempt, as net.Dialer has.
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	if !d.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Deadline)
		defer cancel()
	}

	allowed, refused, err := g.lookup(ctx, d.Resolver, ipNetwork(network), host)
	if err != nil {
		return nil, wrap(err)
	}
	addrs := make([]netip.AddrPort, len(allowed))
	for i, ip := range allowed {
		addrs[i] = netip.AddrPortFrom(ip, uint16(port))
	}
	c, err := dialAll(ctx, d, network, addrs)
	if err == nil {
		return c, nil
	}
	if refused != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return nil, fmt.Errorf("dial %s %s: %w; other answers refused: %w", network, addr, err, refused)
	}
	return nil, err
}

func ipNetwork(tcp string) string {
	switch tcp {
	case "tcp4":
		return "ip4"
	case "tcp6":
		return "ip6"
	}
	return "ip"
}

// Resolve returns the addresses of host that g allows, in the resolver's
// order, IPv4 ones unmapped (1.2.3.4, never ::ffff:1.2.3.4). It is the
// look-up DialContext does, for a caller that wants the answer without
// connecting, such as a registration-time check.
//
// network is "ip", "ip4" or "ip6", as for net.Resolver.LookupNetIP. host is
// an IP literal (judged by CheckAddr, no DNS; an IPv6 zone is kept) or a
// name, judged by CheckURL's name rules and then resolved fully qualified
// (trailing dot) with r, or net.DefaultResolver when r is nil, so search
// domains never apply. When no answer is allowed the error wraps ErrAddress
// (and ErrForbidden) and names the first refusal; resolver errors are
// wrapped with the name. A name with no answer of the wanted family is a
// *net.DNSError with IsNotFound set.
func (g *Guard) Resolve(ctx context.Context, r *net.Resolver, network, host string) ([]netip.Addr, error) {
	switch network {
	case "ip", "ip4", "ip6":
	default:
		return nil, fmt.Errorf("urlguard: resolve %s: network %q is not ip, ip4 or ip6", host, network)
	}
	allowed, _, err := g.lookup(ctx, r, network, host)
	return allowed, err
}

// lookup does Resolve's work. refused is nil if no answer was refused, and
// otherwise the first refusal; err is set when nothing is allowed.
func (g *Guard) lookup(ctx context.Context, r *net.Resolver, network, host string) (allowed []netip.Addr, refused, err error) {
	if ip, perr := netip.ParseAddr(host); perr == nil {
		if err := g.CheckAddr(ip); err != nil {
			return nil, err, err
		}
		if (network == "ip4" && !ip.Unmap().Is4()) || (network == "ip6" && ip.Unmap().Is4()) {
			return nil, nil, &net.DNSError{Err: "no suitable address", Name: host, IsNotFound: true}
		}
		return []netip.Addr{ip.Unmap()}, nil, nil
	}
	if strings.HasPrefix(host, "[") { // checkHost would read it as a URL's IPv6 literal
		err := refuse(ErrHost, "host %q is not a name or an IP address", host)
		return nil, err, err
	}
	if err := g.checkHost(host); err != nil {
		return nil, err, err
	}
	fqdn := host
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	if r == nil {
		r = net.DefaultResolver
	}
	answers, err := r.LookupNetIP(ctx, network, fqdn)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", fqdn, err)
	}
	nrefused := 0
	for _, ip := range answers {
		ip = ip.Unmap() // LookupNetIP returns A records as ::ffff:a.b.c.d
		if (network == "ip4" && !ip.Is4()) || (network == "ip6" && !ip.Is6()) {
			continue
		}
		if err := g.CheckAddr(ip); err != nil {
			if refused == nil {
				refused = err
			}
			nrefused++
			continue
		}
		allowed = append(allowed, ip)
	}
	switch {
	case len(allowed) > 0:
		return allowed, refused, nil
	case refused != nil:
		var detail string
		if rf := (*refusal)(nil); errors.As(refused, &rf) {
			detail = rf.detail
		}
		err := refuse(ErrAddress, "host %s has no allowed address (%d of %d refused; first: %s)", host, nrefused, len(answers), detail)
		return nil, err, err
	}
	return nil, nil, &net.DNSError{Err: "no suitable address", Name: fqdn, IsNotFound: true}
}

// dialAll connects to the first of addrs that accepts. For "tcp" with both
// families present it runs two serial lines, the first address's family and
// the other, the second starting after d.FallbackDelay or as soon as the
// first line fails (RFC 8305, Happy Eyeballs, as net.Dialer does).
func dialAll(ctx context.Context, d *net.Dialer, network string, addrs []netip.AddrPort) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("no address to dial")}
	}
	var primary, fallback []netip.AddrPort
	for _, a := range addrs {
		if network == "tcp" && d.FallbackDelay >= 0 && a.Addr().Is4() != addrs[0].Addr().Is4() {
			fallback = append(fallback, a)
		} else {
			primary = append(primary, a)
		}
	}
	if len(fallback) == 0 {
		return dialSerial(ctx, d, network, primary)
	}
	delay := d.FallbackDelay
	if delay == 0 {
		delay = 300 * time.Millisecond
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the losing line
	type result struct {
		c       net.Conn
		err     error
		primary bool
	}
	results := make(chan result, 2) // buffered: a line never blocks on sending
	line := func(addrs []netip.AddrPort, primary bool) {
		c, err := dialSerial(ctx, d, network, addrs)
		results <- result{c, err, primary}
	}
	go line(primary, true)
	timer := time.NewTimer(delay)
	defer timer.Stop()

	running, fallbackStarted := 1, false
	var primaryErr, fallbackErr error
	for {
		var fire <-chan time.Time
		if !fallbackStarted {
			fire = timer.C
		}
		select {
		case <-fire:
			fallbackStarted = true
			running++
			go line(fallback, false)
		case r := <-results:
			running--
			if r.err == nil {
				if running > 0 { // close the loser's connection, should it win too
					go func() {
						if l := <-results; l.c != nil {
							l.c.Close()
						}
					}()
				}
				return r.c, nil
			}
			if r.primary {
				primaryErr = r.err
			} else {
				fallbackErr = r.err
			}
			if !fallbackStarted {
				fallbackStarted = true
				running++
				go line(fallback, false)
			} else if running == 0 {
				if primaryErr != nil {
					return nil, primaryErr
				}
				return nil, fallbackErr
			}
		}
	}
}

// dialSerial tries addrs one after the other until one connects, giving each
// an equal share of the time left (at least 2 s, or all that is left) so one
// black hole cannot use up the deadline. It returns the first error.
func dialSerial(ctx context.Context, d *net.Dialer, network string, addrs []netip.AddrPort) (net.Conn, error) {
	var first error
	for i, a := range addrs {
		if err := ctx.Err(); err != nil {
			if first == nil {
				first = &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(a), Err: err}
			}
			break
		}
		actx, cancel := attemptContext(ctx, len(addrs)-i)
		c, err := d.DialContext(actx, network, a.String())
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// attemptContext bounds one of n remaining attempts.
func attemptContext(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return context.WithCancel(ctx)
	}
	left := time.Until(deadline)
	share := left / time.Duration(n)
	if minimum := min(left, 2*time.Second); share < minimum {
		share = minimum
	}
	return context.WithTimeout(ctx, share)
}
