package testenv

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// DNS is a tiny DNS server on a UDP port of 127.0.0.1 that answers every A
// query with one IPv4 address and every other query with no records: a
// resolver the test controls, standing in for a private hosts file, so that
// names resolve without any real DNS.
type DNS struct {
	pc     net.PacketConn
	answer [4]byte

	mu    sync.Mutex
	names []string // every name asked, as on the wire ("a.example.com.")
}

// StartDNS runs a DNS server answering answer (an IPv4 address) until the
// test ends.
func StartDNS(tb testing.TB, answer netip.Addr) *DNS {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	d := &DNS{pc: pc, answer: answer.As4()}
	go d.serve()
	return d
}

// Resolver returns a pure-Go resolver that asks only this server.
func (d *DNS) Resolver() *net.Resolver {
	addr := d.pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", addr)
	}}
}

// Names returns every name asked so far, fully qualified as on the wire.
func (d *DNS) Names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.names...)
}

func (d *DNS) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 12 {
			continue
		}
		q := buf[:n]
		// Question: name labels, then qtype and qclass.
		i := 12
		var labels []string
		for i < len(q) && q[i] != 0 {
			l := int(q[i])
			if i+1+l > len(q) {
				break
			}
			labels = append(labels, string(q[i+1:i+1+l]))
			i += l + 1
		}
		if i+5 > len(q) {
			continue
		}
		d.mu.Lock()
		d.names = append(d.names, strings.Join(labels, ".")+".")
		d.mu.Unlock()
		qtype := binary.BigEndian.Uint16(q[i+1:])
		question := q[12 : i+5]
		resp := make([]byte, 0, 64)
		resp = append(resp, q[0], q[1], 0x81, 0x80) // id, response, recursion available
		ancount := uint16(0)
		if qtype == 1 {
			ancount = 1
		}
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint16(resp, ancount)
		resp = append(resp, 0, 0, 0, 0)
		resp = append(resp, question...)
		if ancount == 1 {
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4) // name ptr, A, IN, TTL 0, len 4
			resp = append(resp, d.answer[:]...)
		}
		_, _ = d.pc.WriteTo(resp, from)
	}
}
