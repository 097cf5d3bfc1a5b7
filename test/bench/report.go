package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Units of Row values.
const (
	unitPerSec = "/s"
	unitMs     = "ms"
	unitCPU    = "cpu-s/1k"
	unitBytes  = "B"
	unitRatio  = "x"
	unitPerOp  = "/delivery"
)

// Row is one line of the table: a measured value (the median of the
// repetitions), the baseline it is compared with, and the target.
type Row struct {
	Scenario string    `json:"scenario"`
	What     string    `json:"what"`
	Unit     string    `json:"unit"`
	Value    float64   `json:"value"`
	Samples  []float64 `json:"samples"`
	// Baseline is the same measurement on bare asynq (or the clean run),
	// taken in the same run; nil when there is none.
	Baseline        *float64  `json:"baseline,omitempty"`
	BaselineWhat    string    `json:"baselineWhat,omitempty"`
	BaselineSamples []float64 `json:"baselineSamples,omitempty"`
	// Ratio is Value / Baseline.
	Ratio *float64 `json:"ratio,omitempty"`
	// Target is on the ratio: ">=0.8" or "<=2"; "" for none.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Report is what a run produced.
type Report struct {
	Mode      string    `json:"mode"`
	N         int       `json:"n"`
	Repeat    int       `json:"repeat"`
	Started   time.Time `json:"started"`
	Seconds   float64   `json:"seconds"`
	GoVersion string    `json:"goVersion"`
	CPUs      int       `json:"cpus"`
	LoadAvg   string    `json:"loadAvg,omitempty"`
	Settings  []string  `json:"settings"`
	Rows      []Row     `json:"rows"`
	Errors    []string  `json:"errors,omitempty"`
	Profiles  []string  `json:"profiles,omitempty"`
	// Background is, per step, the CPU that processes other than this run's
	// used meanwhile, in cores: noise the figures of that step carry.
	Background []StepLoad `json:"background"`
	// Duplicates counts deliveries that reached a receiver more than once.
	Duplicates int64 `json:"duplicates"`
	// Strays counts arrivals no measurement expected (e.g. from an earlier one).
	Strays int64 `json:"strays"`
}

// StepLoad is the CPU other processes used during one step.
type StepLoad struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
	Cores   float64 `json:"otherCores"` // average cores busy with other processes
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// add appends a row built from per-repetition samples; baseline may be nil.
func (r *Report) add(scenario, what, unit string, samples, baseline []float64, baselineWhat, target, note string) {
	row := Row{Scenario: scenario, What: what, Unit: unit, Samples: samples, Value: median(samples), Note: note, Target: target}
	if len(baseline) > 0 {
		b := median(baseline)
		row.Baseline, row.BaselineSamples, row.BaselineWhat = &b, baseline, baselineWhat
		if b != 0 {
			ratio := row.Value / b
			row.Ratio = &ratio
			if target != "" {
				met := meets(ratio, target)
				row.Met = &met
			}
		}
	}
	r.Rows = append(r.Rows, row)
}

func meets(ratio float64, target string) bool {
	var v float64
	switch {
	case strings.HasPrefix(target, ">="):
		fmt.Sscanf(target[2:], "%g", &v)
		return ratio >= v
	case strings.HasPrefix(target, "<="):
		fmt.Sscanf(target[2:], "%g", &v)
		return ratio <= v
	}
	return false
}

func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	switch unit {
	case unitPerSec:
		return commas(v) + "/s"
	case unitMs:
		if v < 10 {
			return fmt.Sprintf("%.2f ms", v)
		}
		return fmt.Sprintf("%.1f ms", v)
	case unitCPU:
		return fmt.Sprintf("%.3f cpu-s/1k", v)
	case unitBytes:
		if v >= 10<<20 {
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		}
		return commas(v) + " B"
	case unitRatio:
		return fmt.Sprintf("%.2f×", v)
	case unitPerOp:
		return fmt.Sprintf("%.1f /delivery", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

func commas(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// printTable writes the human-readable table.
func (r *Report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nwebhook-dispatcher bench: mode=%s N=%d repeat=%d (median of repeats) · %s · %d CPUs · load %s · %.0fs\n",
		r.Mode, r.N, r.Repeat, r.GoVersion, r.CPUs, r.LoadAvg, r.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\twhat\tvalue\tbaseline\tratio\ttarget\tmet?")
	for _, row := range r.Rows {
		base, ratio, target, met := "—", "—", "—", "—"
		if row.Baseline != nil {
			base = formatValue(*row.Baseline, row.Unit)
			if row.BaselineWhat != "" {
				base += " (" + row.BaselineWhat + ")"
			}
		}
		if row.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *row.Ratio)
		}
		if row.Target != "" {
			target = strings.Replace(strings.Replace(row.Target, ">=", "≥", 1), "<=", "≤", 1) + "×"
		}
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*row.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Scenario, row.What, formatValue(row.Value, row.Unit), base, ratio, target, met)
	}
	tw.Flush()
	if len(r.Background) > 0 {
		parts := make([]string, len(r.Background))
		for i, b := range r.Background {
			parts[i] = fmt.Sprintf("%s %.2f", b.Step, b.Cores)
		}
		fmt.Fprintf(w, "\nother processes' CPU during each step (cores of %d): %s\n", r.CPUs, strings.Join(parts, " · "))
	}
	notes := false
	for _, row := range r.Rows {
		if row.Note != "" {
			if !notes {
				fmt.Fprintln(w, "\nnotes:")
				notes = true
			}
			fmt.Fprintf(w, "  %s %s: %s\n", row.Scenario, row.What, row.Note)
		}
	}
	if r.Duplicates > 0 || r.Strays > 0 {
		fmt.Fprintf(w, "\nreceivers: %d deliveries arrived more than once, %d arrivals were not expected\n", r.Duplicates, r.Strays)
	}
	if len(r.Profiles) > 0 {
		fmt.Fprintln(w, "\nprofiles:")
		for _, p := range r.Profiles {
			fmt.Fprintln(w, "  "+p)
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "\nERRORS:")
		for _, e := range r.Errors {
			fmt.Fprintln(w, "  "+strings.ReplaceAll(e, "\n", "\n    "))
		}
	}
}

func (r *Report) writeJSON(path string) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func newReport(o Options) *Report {
	return &Report{
		Mode: o.Mode, N: o.N, Repeat: o.Repeat, Started: time.Now().UTC(),
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), LoadAvg: loadAvg(),
	}
}
