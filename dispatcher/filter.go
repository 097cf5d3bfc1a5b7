package dispatcher

import (
	"net/url"
	"strings"
	"time"
)

// ReasonCancelled is the lastError of a delivery an operator cancelled: it is
// failed, listed and redeliverable like one that used up its attempts.
const ReasonCancelled = "cancelled"

// Filter selects deliveries for listings and bulk actions. The zero value of
// each field matches everything.
type Filter struct {
	// State is the state to list; bulk actions ignore it (each acts on the
	// states it can change).
	State State
	// Host is the webhook's host name, compared case-insensitively and
	// without a trailing dot ("Hooks.Example.com." matches
	// https://hooks.example.com:8443/x). The port is not compared.
	Host string
	// Since and Until bound the enqueue time (the failure time for failed
	// deliveries): Since <= t < Until. A zero bound is open.
	Since, Until time.Time
}

// CanonicalHost is the host name of a webhook URL or a bare host, lower case,
// without port or trailing dot; "" when raw has none.
func CanonicalHost(raw string) string {
	host := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return ""
		}
		host = u.Hostname()
	} else if u, err := url.Parse("https://" + raw); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// MatchHost reports whether webhook's host is f.Host (always true when
// f.Host is empty).
func (f Filter) MatchHost(webhook string) bool {
	return f.Host == "" || CanonicalHost(webhook) == CanonicalHost(f.Host)
}

// MatchTime reports whether t lies in [f.Since, f.Until).
func (f Filter) MatchTime(t time.Time) bool {
	if !f.Since.IsZero() && t.Before(f.Since) {
		return false
	}
	return f.Until.IsZero() || t.Before(f.Until)
}

// QueueStats is the backlog at a glance: counts per state, the age of the
// oldest pending delivery, and the destinations with the largest backlog.
type QueueStats struct {
	// Counts has one entry per State (failed: the store's failed records).
	Counts map[State]int `json:"counts"`
	// OldestPendingSeconds is how long the oldest pending delivery has
	// waited (0 when nothing is pending).
	OldestPendingSeconds float64 `json:"oldestPendingSeconds"`
	// TopDestinations are the hosts with the most pending + retrying
	// deliveries, largest first, among the Scanned tasks.
	TopDestinations []DestinationBacklog `json:"topDestinations"`
	// Scanned is how many pending and retrying tasks were read to build
	// TopDestinations, at most ScanLimit; Complete is false when the backlog
	// was larger and the ranking covers only the oldest part of it.
	Scanned   int  `json:"scanned"`
	ScanLimit int  `json:"scanLimit"`
	Complete  bool `json:"complete"`
}

// DestinationBacklog is one destination's share of the backlog and how its
// latest attempt went (from the attempt log's last entry of its most recently
// failed retrying delivery, or of any of its deliveries).
type DestinationBacklog struct {
	Host          string     `json:"host"`
	Pending       int        `json:"pending"`
	Retrying      int        `json:"retrying"`
	Backlog       int        `json:"backlog"`
	LastOutcome   Outcome    `json:"lastOutcome,omitempty"`
	LastStatus    int        `json:"lastStatus,omitempty"`
	LastAttemptAt *time.Time `json:"lastAttemptAt,omitempty"`
	LastError     string     `json:"lastError,omitempty"`
}

// BulkResult is what a bulk redelivery or cancellation did: Matched
// deliveries fit the filter; Done were changed (0 on a dry run); Skipped
// changed state in between (already active, delivered or gone).
type BulkResult struct {
	Matched int  `json:"matched"`
	Done    int  `json:"done"`
	Skipped int  `json:"skipped"`
	DryRun  bool `json:"dryRun"`
}
