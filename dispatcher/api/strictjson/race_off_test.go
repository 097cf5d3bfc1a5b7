//go:build !race

package strictjson

// costRuns is how many times TestDecodeCostLinear measures each body, taking
// the fastest.
const costRuns = 5
