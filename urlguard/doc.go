// Package urlguard keeps webhook deliveries away from our own network (SSRF).
//
// A customer's webhook URL is checked twice, with the same policy:
//
//   - At registration, [CheckURL] judges the text of the URL without any DNS
//     look-up. It accepts only absolute https URLs with a plain host and
//     refuses, each with its own reason, anything a parser might read
//     differently from us: userinfo, control characters, internal and cloud
//     metadata names, IP literals outside public unicast space, and hosts that
//     some parser (inet_aton, WHATWG URL, a browser) could read as an IP
//     address in a non-canonical form such as 0x7f.1, 2130706433 or
//     １２７.０.０.１. Such hosts are refused, never decoded into something
//     acceptable.
//   - At every dial, [Guard.Control] (set as net.Dialer.Control) sees the IP
//     address the dialer is about to connect to, after DNS and after any
//     redirect, and refuses it unless [CheckAddr] finds it public. This is
//     the check that stops DNS rebinding and names that resolve inward; the
//     registration check only gives the customer an early, clear answer.
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
// to a local httptest server; a nil or zero Guard is the default policy.
package urlguard
