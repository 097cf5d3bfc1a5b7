package main

// DefaultFetchLoops is how many fetch loops (asynq servers) a worker
// process runs at least when WORKER_FETCH_LOOPS is 0. One: 4 drained
// faster at less CPU per delivery (README, Performance), but with several
// asynq servers in one process, deliveries in flight when Redis was killed
// and restarted were left "active" until the reconciler recovered them
// ~50 s later (TestRedisKilledAndRestartedWithAOF); the cause is not found
// yet, so more loops are opt-in.
const DefaultFetchLoops = 1

// fetchLoops is the fetch loops per shard group: n when positive, else
// enough for DefaultFetchLoops per process over groups groups; never more
// than leaves each server one of concurrency's slots (at least 1).
func fetchLoops(n, groups, concurrency int) int {
	groups = max(groups, 1)
	if n <= 0 {
		n = (DefaultFetchLoops + groups - 1) / groups
	}
	return max(1, min(n, concurrency/groups))
}

// fetchGroups returns each shard group loops times in a row (loops < 1
// counts as 1): the queues of one asynq server each, so that every group is
// polled by loops fetch loops.
func fetchGroups(groups []map[string]int, loops int) []map[string]int {
	loops = max(loops, 1)
	out := make([]map[string]int, 0, len(groups)*loops)
	for _, g := range groups {
		for range loops {
			out = append(out, g)
		}
	}
	return out
}

// splitConcurrency divides total concurrent deliveries among n servers as
// evenly as it can, so they sum to total; a server gets at least 1 (asynq
// reads 0 as its own default), so with total < n the sum is n.
func splitConcurrency(total, n int) []int {
	n = max(n, 1)
	out := make([]int, n)
	for i := range out {
		out[i] = total / n
		if i < total%n {
			out[i]++
		}
		out[i] = max(out[i], 1)
	}
	return out
}
