//go:build race

package strictjson

// costRuns is how many times TestDecodeCostLinear measures each body, taking
// the fastest. The race detector slows every run about tenfold and evenly, so
// fewer runs keep the ratio while the suite stays within its time budget.
const costRuns = 2
