//go:build race

package worker

// raceEnabled: the race detector multiplies CPU cost several times over, so
// latency ratios measured in process say little about production.
const raceEnabled = true
