// Package schedule holds the published webhook retry schedule: after a failed
// attempt the dispatcher waits 5s, 15s, 1m, 5m, 15m, 1h, 6h, 12h and 24h before
// the next one, so a delivery gets 10 attempts in all over 43h 21m 20s.
//
// The package is pure: no clock, no I/O, no asynq import.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Steps is how many retries follow the first attempt; pass it to asynq.MaxRetry.
const Steps = 9

// Attempts is the number of attempts in one delivery cycle: the first plus Steps retries.
const Attempts = Steps + 1

// Schedule is a fixed retry schedule: s[n] is the wait after n earlier retries.
type Schedule [Steps]time.Duration

// Production is the provider's published schedule. Customers plan their
// outages around it, so it is fixed: no jitter, no exponent.
var Production = Schedule{
	5 * time.Second,
	15 * time.Second,
	time.Minute,
	5 * time.Minute,
	15 * time.Minute,
	time.Hour,
	6 * time.Hour,
	12 * time.Hour,
	24 * time.Hour,
}

// ErrInvalid is wrapped by every Parse error.
var ErrInvalid = errors.New("schedule: invalid retry schedule")

// Delay returns the wait after n retries so far, as asynq counts them (n == 0
// after the first failed attempt); ok is false once the schedule is used up
// (n >= Steps) or for a negative n.
func (s Schedule) Delay(n int) (d time.Duration, ok bool) {
	if n < 0 || n >= len(s) {
		return 0, false
	}
	return s[n], true
}

// Next returns the nominal time of the next attempt of a delivery that has
// failed retried times so far in its cycle (asynq's retry count: 1 after the
// first failed attempt), whose last attempt ended at lastAttemptEnd. ok is
// false when no attempt follows (retried > Steps) or retried < 1.
//
// It is the one formula for retry times: the worker holds back a retry that
// asynq hands over early (asynq keeps due times in whole seconds), and the
// API and the CLI report nextAttemptAt with it.
func (s Schedule) Next(lastAttemptEnd time.Time, retried int) (t time.Time, ok bool) {
	d, ok := s.Delay(retried - 1)
	if !ok {
		return time.Time{}, false
	}
	return lastAttemptEnd.Add(d), true
}

// Window is the time from the end of the first failed attempt to the start of
// the last retry: the sum of all steps (43h 21m 20s for Production).
func (s Schedule) Window() time.Duration {
	var total time.Duration
	for _, d := range s {
		total += d
	}
	return total
}

// String formats s the way Parse reads it.
func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// Delay returns Production.Delay(n).
func Delay(n int) (time.Duration, bool) { return Production.Delay(n) }

// Parse reads an override such as "50ms,50ms,100ms,100ms,200ms,200ms,400ms,400ms,800ms":
// exactly nine comma-separated Go durations, each positive. The empty string
// yields Production. It is for tests and staging; production keeps the
// published schedule.
func Parse(text string) (Schedule, error) {
	if strings.TrimSpace(text) == "" {
		return Production, nil
	}
	fields := strings.Split(text, ",")
	if len(fields) != Steps {
		return Schedule{}, fmt.Errorf("%w: want exactly %d comma-separated durations, got %d", ErrInvalid, Steps, len(fields))
	}
	var s Schedule
	for i, f := range fields {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return Schedule{}, fmt.Errorf("%w: step %d: %w", ErrInvalid, i+1, err)
		}
		if d <= 0 {
			return Schedule{}, fmt.Errorf("%w: step %d: %s is not positive", ErrInvalid, i+1, d)
		}
		s[i] = d
	}
	return s, nil
}
