package schedule

import (
	"errors"
	"testing"
	"time"
)

func TestDelayProduction(t *testing.T) {
	want := []time.Duration{
		5 * time.Second, 15 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute,
		time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	}
	for n, w := range want {
		d, ok := Delay(n)
		if !ok || d != w {
			t.Errorf("Delay(%d) = %v, %v; want %v, true", n, d, ok, w)
		}
	}
}

func TestDelayOutOfRange(t *testing.T) {
	for _, n := range []int{-1, 9, 10, 1 << 30} {
		if d, ok := Delay(n); ok || d != 0 {
			t.Errorf("Delay(%d) = %v, %v; want 0, false", n, d, ok)
		}
	}
}

func TestCounts(t *testing.T) {
	if Steps != 9 || Attempts != 10 {
		t.Fatalf("Steps, Attempts = %d, %d; want 9, 10", Steps, Attempts)
	}
}

func TestWindow(t *testing.T) {
	want := 43*time.Hour + 21*time.Minute + 20*time.Second
	if got := Production.Window(); got != want {
		t.Errorf("Production.Window() = %v, want %v", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Schedule
		wantErr bool
	}{
		{in: "", want: Production},
		{in: "  ", want: Production},
		{in: Production.String(), want: Production},
		{in: "1ms,2ms,3ms,4ms,5ms,6ms,7ms,8ms,9ms", want: Schedule{1e6, 2e6, 3e6, 4e6, 5e6, 6e6, 7e6, 8e6, 9e6}},
		{in: " 1s , 1s,1s,1s,1s,1s,1s,1s,1s ", want: Schedule{1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9}},
		{in: "1s,1s,1s,1s,1s,1s,1s,1s", wantErr: true},       // eight steps
		{in: "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s", wantErr: true}, // ten steps
		{in: "1s,1s,1s,1s,1s,1s,1s,1s,soon", wantErr: true},  // not a duration
		{in: "1s,1s,1s,1s,0s,1s,1s,1s,1s", wantErr: true},    // zero
		{in: "1s,1s,1s,1s,-1s,1s,1s,1s,1s", wantErr: true},   // negative
		{in: "1s,1s,1s,1s,1s,1s,1s,1s,", wantErr: true},      // empty last step
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) error = %v, want ErrInvalid", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestNext(t *testing.T) {
	end := time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)
	tests := []struct {
		retried int
		want    time.Time
		ok      bool
	}{
		{0, time.Time{}, false},
		{1, end.Add(5 * time.Second), true},
		{2, end.Add(15 * time.Second), true},
		{9, end.Add(24 * time.Hour), true},
		{10, time.Time{}, false},
		{-1, time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := Production.Next(end, tt.retried)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("Next(end, %d) = %v, %v; want %v, %v", tt.retried, got, ok, tt.want, tt.ok)
		}
	}
}
