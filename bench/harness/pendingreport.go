package harness

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// pendingGoal asks a store's phase for at least min times the rate of
// its reference operation in the same run (see README.md, "Pending
// stores", for why these ratios).
type pendingGoal struct {
	store, phase string
	min          float64
}

var pendingGoals = []pendingGoal{
	{StoreBolt, cellEnqueue, 0.5},
	{StoreBolt, cellDrain, 0.5},
	{StoreRedis, cellEnqueue, 0.3},
	{StoreRedis, cellDrain, 0.15},
}

// refUnit names one reference operation.
func refUnit(store string) string {
	if store == StoreBolt {
		return "Puts"
	}
	return "XADDs"
}

// PendingGoals checks each store's enqueue and drain rates against its
// goal, a ratio to the reference operation timed in alternation with
// it. A goal the run did not measure is left out.
func PendingGoals(rs []StoreResult) []Goal {
	var gs []Goal
	for _, g := range pendingGoals {
		for _, r := range rs {
			if r.Store != g.store || r.Skipped != "" || r.Failed[g.phase] != nil || r.Failed[cellReference] != nil {
				continue
			}
			p := r.Enqueue
			if g.phase == cellDrain {
				p = r.Drain
			}
			if p.Ratio() == 0 {
				continue
			}
			gs = append(gs, Goal{
				Name: fmt.Sprintf("%s %s at least %.2gx the rate of a %s", g.store, g.phase, g.min, referenceName(g.store)),
				Measured: fmt.Sprintf("%.2fx (%.0f entries/s to %.0f %s/s)",
					p.Ratio(), p.Store.PerSecond(), p.Ref.PerSecond(), refUnit(g.store)),
				Met: p.Ratio() >= g.min,
			})
		}
	}
	return gs
}

// PendingMarkdown writes the pending-stores table, what it measured, the
// failures and the goals.
func PendingMarkdown(w io.Writer, rs []StoreResult, cfg PendingConfig) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nPending stores (interceptors/pending): a Queue enqueues entries into each store, then drains them; "+
		"each phase runs in %v chunks, each followed by as long of the store's raw operation on the same disk or server:\n\n", chunk)
	cols := []string{"store", "reference", "reference ops/s", "allocs/op", "enqueue entries/s (of reference)", "allocs/entry",
		"drain entries/s (of reference)", "allocs/entry"}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(cols)))
	for _, r := range rs {
		cells := []string{storeTitle(r.Store, cfg), referenceName(r.Store)}
		if r.Skipped != "" {
			cells = append(cells, "skipped: "+r.Skipped)
			for range len(cols) - len(cells) {
				cells = append(cells, na)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
			continue
		}
		cells = append(cells, cellOr(r.Failed[cellReference], rate(r.Reference()), allocs(r.Reference()))...)
		for _, ph := range []struct {
			cell string
			p    Phase
		}{{cellEnqueue, r.Enqueue}, {cellDrain, r.Drain}} {
			c := rate(ph.p.Store)
			if x := ph.p.Ratio(); x > 0 && c != na {
				c += fmt.Sprintf(" (%.2fx)", x)
			}
			cells = append(cells, cellOr(r.Failed[ph.cell], c, allocs(ph.p.Store))...)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintf(w, "\nEnqueue: Queue.Enqueue of a 200-byte request that keeps one metadata entry, as the interceptor queues a call "+
		"it cannot send. Drain: Queue.DrainOnce passes of the library's default batch (64) over a connection that accepts every "+
		"call: claim, send again, settle. Each store gets at most %d entries and each phase at most %v; allocations count the "+
		"whole process during the store's (or the reference's) chunks.\n\n", cfg.Entries, cfg.Budget)
	for _, r := range rs {
		if r.Skipped == "" && r.Failed[cellEnqueue] == nil {
			fmt.Fprintf(w, "%s: %d entries enqueued in %s, %d of them drained in %s.\n", r.Store,
				r.Enqueue.Store.Entries, secs(r.Enqueue.Store), r.Drain.Store.Entries, secs(r.Drain.Store))
		}
	}
	for _, r := range rs {
		for _, k := range slices.Sorted(maps.Keys(r.Failed)) {
			fmt.Fprintf(w, "\n%s, %s: failed twice: %v\n", r.Store, k, r.Failed[k])
		}
	}
	if gs := PendingGoals(rs); len(gs) > 0 {
		fmt.Fprintf(w, "\nThe pending stores' goals in this run:\n")
		for _, g := range gs {
			fmt.Fprintf(w, "- %s\n", g)
		}
	}
}

// storeTitle names a store with where it ran.
func storeTitle(store string, cfg PendingConfig) string {
	if store == StoreBolt {
		return fmt.Sprintf("boltstore (a bbolt file in %s)", cmp.Or(cfg.Dir, os.TempDir()))
	}
	return "redisstore (redis-server on 127.0.0.1, no persistence)"
}

// cellOr is a failed measurement's cell and an empty one, or cells.
func cellOr(err error, cells ...string) []string {
	if err == nil {
		return cells
	}
	out := []string{failedCell(err)}
	for range len(cells) - 1 {
		out = append(out, "")
	}
	return out
}

func rate(t Throughput) string {
	if t.PerSecond() == 0 {
		return na
	}
	return fmt.Sprintf("%.0f", t.PerSecond())
}

func allocs(t Throughput) string {
	if t.Entries == 0 {
		return na
	}
	return fmt.Sprintf("%.0f", t.AllocsPerEntry())
}

func secs(t Throughput) string { return fmt.Sprintf("%.2f s", t.Elapsed.Seconds()) }
