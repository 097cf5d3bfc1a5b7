package main

import (
	"slices"
	"testing"
)

func TestSplitConcurrency(t *testing.T) {
	tests := []struct {
		total, n int
		want     []int
	}{
		{100, 1, []int{100}},
		{100, 3, []int{34, 33, 33}},
		{100, 4, []int{25, 25, 25, 25}},
		{2, 3, []int{1, 1, 1}}, // fewer slots than servers: each still runs
		{7, 0, []int{7}},
	}
	for _, tt := range tests {
		if got := splitConcurrency(tt.total, tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("splitConcurrency(%d, %d) = %v, want %v", tt.total, tt.n, got, tt.want)
		}
	}
}

func TestFetchGroups(t *testing.T) {
	a, b := map[string]int{"q0": 1}, map[string]int{"q1": 1}
	got := fetchGroups([]map[string]int{a, b}, 2)
	if len(got) != 4 || got[0]["q0"] != 1 || got[1]["q0"] != 1 || got[2]["q1"] != 1 || got[3]["q1"] != 1 {
		t.Errorf("fetchGroups(2 groups, 2 loops) = %v, want each group twice in a row", got)
	}
	if got := fetchGroups([]map[string]int{a}, 0); len(got) != 1 {
		t.Errorf("fetchGroups(loops 0) = %v, want the group once", got)
	}
}

func TestFetchLoopsDefault(t *testing.T) {
	for _, tt := range []struct{ n, groups, concurrency, want int }{
		{0, 1, 100, 1}, {0, 2, 100, 1}, {0, 6, 100, 1}, {3, 1, 100, 3}, {4, 1, 100, 4}, {1, 6, 100, 1},
		{4, 1, 2, 2}, // never more servers than concurrent slots
		{8, 2, 4, 2},
		{0, 6, 3, 1}, // fewer slots than groups: one server per group still
	} {
		if got := fetchLoops(tt.n, tt.groups, tt.concurrency); got != tt.want {
			t.Errorf("fetchLoops(%d, %d groups, concurrency %d) = %d, want %d", tt.n, tt.groups, tt.concurrency, got, tt.want)
		}
	}
}
