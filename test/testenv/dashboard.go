package testenv

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
)

// Window is what DashboardExprs puts in place of Grafana's interval variables: long enough
// for rate() over a 1 s scrape, short enough that a test's first samples are inside it.
const Window = "1m"

// grafanaVars are the built-in Grafana variables DashboardExprs knows how to replace.
var grafanaVars = map[string]string{
	"__rate_interval": Window,
	"__interval":      Window,
	"__range":         Window,
	"__interval_ms":   "60000",
	"__range_s":       "60",
	"__range_ms":      "60000",
}

// varRef matches $name, ${name} and ${name:format}; names start with a letter or _, so
// label_replace's "$1" is left alone.
var varRef = regexp.MustCompile(`\$(?:\{([A-Za-z_]\w*)(?::\w+)?\}|([A-Za-z_]\w*))`)

// DashboardExprs returns every PromQL expr of the Grafana dashboard JSON at path, in panel
// order: the targets of every panel, including panels nested in rows (open or
// collapsed). Grafana's interval variables ($__rate_interval, $__interval, $__range, and
// their _ms/_s forms) are replaced by Window. A target without expr is skipped.
//
// Any other variable in an expr is an error: a test cannot know what value it would have.
// Variables used elsewhere (such as a $datasource in datasource fields) don't matter.
func DashboardExprs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var exprs []string
	var walkErr error
	walk(dash, func(expr string) {
		var bad string
		out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
			m := varRef.FindStringSubmatch(ref)
			name := m[1] + m[2]
			if v, ok := grafanaVars[name]; ok {
				return v
			}
			bad = ref
			return ref
		})
		if bad != "" && walkErr == nil {
			walkErr = fmt.Errorf("%s: expr %q uses variable %s, which a test cannot resolve", path, expr, bad)
		}
		exprs = append(exprs, out)
	})
	if walkErr != nil {
		return nil, walkErr
	}
	return exprs, nil
}

// walk calls fn with the expr of every object in a "targets" array anywhere under v.
// Walking the whole tree, not just panels[].targets, also finds rows' nested panels.
func walk(v any, fn func(expr string)) {
	switch v := v.(type) {
	case map[string]any:
		if targets, ok := v["targets"].([]any); ok {
			for _, t := range targets {
				if t, ok := t.(map[string]any); ok {
					if expr, ok := t["expr"].(string); ok && expr != "" {
						fn(expr)
					}
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(v)) { // sorted: same order every run
			if k != "targets" {
				walk(v[k], fn)
			}
		}
	case []any:
		for _, child := range v {
			walk(child, fn)
		}
	}
}
