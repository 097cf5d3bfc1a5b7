// Package urlguard keeps webhook deliveries away from our own network (SSRF).
//
// A customer's webhook URL is checked twice, with the same policy:
//
//   - At registration, [CheckURL] judges the text of the URL without any DNS
//     look-up. It accepts only absolute https URLs with a plain host and
//     refuses, each with its own reason, anything a parser might read
//     differently from us: userinfo, control characters, internal and cloud
//     metadata names, names not under an ICANN public suffix (redis.default,
//     svc.cluster.local) and public suffixes themselves (co.uk), IP literals
//     outside public unicast space, and hosts that some parser (inet_aton,
//     WHATWG URL, a browser) could read as an IP address in a non-canonical
//     form such as 0x7f.1, 2130706433 or １２７.０.０.１. Such hosts are
//     refused, never decoded into something acceptable.
//   - At every dial, [Guard.DialContext] (set as http.Transport.DialContext)
//     judges the host again, resolves a name fully qualified so resolv.conf
//     search domains never apply, drops every answer [CheckAddr] refuses and
//     connects only to the rest; [Guard.Control], which it keeps on the
//     dialer, sees the IP address about to be connected to, after DNS and
//     after any redirect. This is the check that stops DNS rebinding and
//     names that resolve inward; the registration check only gives the
//     customer an early, clear answer.
//
// An address is public only if it is globally reachable unicast: the tables in
// addr.go block every range the IANA IPv4 and IPv6 special-purpose address
// registries mark as not globally reachable, multicast, and all IPv6 outside
// 2000::/3. Where the registry is finer than we need (192.0.0.0/24, 2001::/23)
// the whole block is refused: the policy fails closed.
//
// Every refusal wraps [ErrForbidden], and also one finer sentinel naming the
// reason ([ErrScheme], [ErrAddress], ...), so callers branch with errors.Is and
// never match strings. Error texts name the offending part (scheme, host,
// port) but never echo a whole URL, which may carry credentials or tokens.
//
// The package-level functions use the default, fully closed policy. A [Guard]
// built by [New] may exempt prefixes such as 127.0.0.1/32 so tests can deliver
// to a local httptest server; one built by [NewWithOptions] may also deny the
// provider's own public ranges and restrict ports. A nil or zero Guard is the
// default policy.
//
// [DestinationKey] names the destination a URL delivers to (registrable
// domain or canonical IP, and port), so that a per-destination cap cannot be
// multiplied by spelling one destination many ways.
package urlguard
