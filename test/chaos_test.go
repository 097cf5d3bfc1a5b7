package test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestChaos runs a mixed workload (healthy, failing and slow receivers)
// over a few thousand deliveries while worker processes are SIGKILLed and
// restarted, Redis is SIGKILLed and restarted on its AOF, and lease entries
// are deleted at random. At the end every accepted delivery must be
// delivered (and have reached its receiver) or failed and listed: lost and
// stuck must be 0. Duplicate POSTs are reported, not asserted (at least once).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: ~2–3 minutes")
	}
	const (
		total      = 2000
		chaosFor   = 50 * time.Second
		settleWait = 110 * time.Second
	)
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	var mu sync.Mutex
	posts := map[string]int{}    // 200s sent per id
	arrivals := map[string]int{} // requests received per id, cut off or not
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		id := r.Header.Get("X-Media-Id")
		mu.Lock()
		arrivals[id]++
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/fail"):
			w.WriteHeader(http.StatusInternalServerError)
			return
		case strings.HasSuffix(r.URL.Path, "/slow"):
			select {
			case <-time.After(time.Duration(500+rand.IntN(1500)) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		mu.Lock()
		posts[id]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile,
		"RETRY_SCHEDULE=200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
		"RECONCILE_INTERVAL=1s", "RECONCILE_GRACE=7s", "DELIVERY_TIMEOUT=5s", "LOG_LEVEL=warn"}
	api := testenv.StartDispatcher(t, "api", env...)
	workers := []*testenv.Dispatcher{testenv.StartDispatcher(t, "worker", env...), testenv.StartDispatcher(t, "worker", env...)}

	kind := func(i int) string {
		switch i % 10 {
		case 0, 1:
			return "fail"
		case 2, 3:
			return "slow"
		}
		return "ok"
	}
	id := func(i int) string { return fmt.Sprintf("chaos-%04d", i) }

	// Enqueue in batches of 50 from 4 goroutines, one batch a second so the
	// load spans the chaos; an item answered 503 (Redis down) is sent again
	// until it is answered 202 or 409.
	accepted := make([]bool, total)
	var enq sync.WaitGroup
	started := time.Now()
	for g := range 4 {
		enq.Add(1)
		go func() {
			defer enq.Done()
			for lo := g * 50; lo < total; lo += 200 {
				time.Sleep(time.Until(started.Add(time.Duration(lo/50) * time.Second)))
				var todo []int
				for i := lo; i < min(lo+50, total); i++ {
					todo = append(todo, i)
				}
				for attempt := 0; len(todo) > 0 && attempt < 200; attempt++ {
					items := make([]any, len(todo))
					for k, i := range todo {
						items[k] = testenv.Delivery(rc.URL+"/"+kind(i), id(i))
					}
					resp := api.Call(t, http.MethodPost, "/v1/deliveries/batch", map[string]any{"deliveries": items})
					var out struct{ Results []struct{ Status int } }
					if resp.Status == http.StatusOK {
						resp.JSON(t, &out)
					}
					var again []int
					for k, i := range todo {
						if k < len(out.Results) && (out.Results[k].Status == http.StatusAccepted || out.Results[k].Status == http.StatusConflict) {
							accepted[i] = true
							continue
						}
						again = append(again, i)
					}
					todo = again
					if len(todo) > 0 {
						time.Sleep(200 * time.Millisecond)
					}
				}
			}
		}()
	}

	// Chaos until chaosFor has passed.
	var workerKills, redisKills, leaseDeletes int
	for tick := 1; time.Since(started) < chaosFor; tick++ {
		time.Sleep(time.Second)
		if tick%7 == 0 {
			k := rand.IntN(len(workers))
			workers[k].Kill()
			workers[k] = testenv.StartDispatcher(t, "worker", env...)
			workerKills++
		}
		if tick%19 == 0 {
			redis.Kill()
			time.Sleep(time.Second)
			redis.Start(t)
			redisKills++
		}
		if tick%2 == 0 {
			if reply, err := testenv.Command(redis.Addr(), "ZRANGE", asynqKey("lease"), "0", "-1"); err == nil {
				if ids, _ := reply.([]any); len(ids) > 0 {
					if member, ok := ids[rand.IntN(len(ids))].(string); ok {
						if _, err := redis.Do("ZREM", asynqKey("lease"), member); err == nil {
							leaseDeletes++
						}
					}
				}
			}
		}
	}
	enq.Wait()
	n := 0
	for _, ok := range accepted {
		if ok {
			n++
		}
	}
	t.Logf("chaos for %s: %d worker SIGKILLs, %d Redis SIGKILLs, %d lease entries deleted; %d of %d accepted",
		time.Since(started).Round(time.Second), workerKills, redisKills, leaseDeletes, n, total)
	if n != total {
		t.Errorf("%d deliveries never accepted", total-n)
	}

	// Settle: every accepted delivery ends delivered or failed.
	calm := time.Now()
	states := map[string]string{}
	deadline := time.Now().Add(settleWait)
	for {
		open := 0
		for i := range total {
			if !accepted[i] || states[id(i)] == "delivered" || states[id(i)] == "failed" {
				continue
			}
			resp := api.Call(t, http.MethodGet, "/v1/deliveries/"+id(i), nil)
			var st struct{ State string }
			if resp.Status == http.StatusOK {
				resp.JSON(t, &st)
				states[id(i)] = st.State
			} else {
				states[id(i)] = fmt.Sprintf("HTTP %d", resp.Status)
			}
			if st.State != "delivered" && st.State != "failed" {
				open++
			}
		}
		if open == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("settled %.1f s after the chaos ended", time.Since(calm).Seconds())

	listed := map[string]bool{}
	for cursor, pages := "", 0; pages < 100; pages++ {
		var page struct {
			Deliveries []struct{ ID string } `json:"deliveries"`
			NextCursor string                `json:"nextCursor"`
		}
		api.Call(t, http.MethodGet, "/v1/deliveries?state=failed&limit=500&cursor="+cursor, nil).JSON(t, &page)
		for _, d := range page.Deliveries {
			listed[d.ID] = true
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var lost, stuck, duplicates, delivered, failed []string
	dupPosts, dupArrivals, multiArrived := 0, 0, 0
	for i := range total {
		if !accepted[i] {
			continue
		}
		s, k := states[id(i)], kind(i)
		switch {
		case s == "delivered" && k != "fail" && posts[id(i)] > 0:
			delivered = append(delivered, id(i))
			if arrivals[id(i)] > 1 {
				multiArrived++
				dupArrivals += arrivals[id(i)] - 1
			}
			if posts[id(i)] > 1 {
				duplicates = append(duplicates, id(i))
				dupPosts += posts[id(i)] - 1
			}
		case s == "failed" && listed[id(i)]:
			failed = append(failed, id(i))
			if k != "fail" {
				t.Logf("%s failed although its receiver answers 200 (listed, redeliverable)", id(i))
			}
		case s == "active" || s == "pending" || s == "retrying" || s == "scheduled":
			stuck = append(stuck, id(i)+" "+s)
		default:
			lost = append(lost, fmt.Sprintf("%s (%s, %s receiver, %d POSTs, listed %v)", id(i), s, k, posts[id(i)], listed[id(i)]))
		}
	}
	t.Logf("%d delivered, %d failed and listed; lost %d, stuck %d; duplicates: %d deliveries answered 200 more than once (%d extra), %d reached the receiver more than once counting requests cut off by a kill (%d extra)",
		len(delivered), len(failed), len(lost), len(stuck), len(duplicates), dupPosts, multiArrived, dupArrivals)
	if len(lost) > 0 {
		t.Errorf("lost %d: %v", len(lost), first(lost, 20))
	}
	if len(stuck) > 0 {
		t.Errorf("stuck %d: %v", len(stuck), first(stuck, 20))
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }
