package checkout

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/failsoft/failsoft/demo/internal/chaos"
)

// ServerView is what the server says about itself, for the report.
type ServerView struct {
	Payments     int          `json:"payments"`
	Committed    uint64       `json:"charges_committed"`
	Replayed     uint64       `json:"charges_replayed"`
	KeyReplays   uint64       `json:"key_replays"`
	KeyConflicts uint64       `json:"key_conflicts"`
	Chaos        chaos.Status `json:"chaos"`
}

// Report is the end-of-run summary.
type Report struct {
	Stats     Snapshot
	Start     time.Time
	Confirmed int
	Dead      int // pending charges refused for good, all runs
	Server    *ServerView
	Recon     Reconciliation
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	s := r.Stats
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-16s "+format+"\n", append([]any{label}, args...)...)
	}
	fmt.Fprintln(w, "=== failsoft demo report ===")
	line("logical calls", "%d (%s)", s.LogicalCalls, counts(s.Calls))
	line("attempts", "%d: %d retries, %d hedges, %d backoffs (%d on server pushback)", s.Attempts, s.Retries, s.Hedges, s.Backoffs, s.Pushbacks)
	line("retries stopped", "%s", counts(s.RetryStops))
	if s.RetriedTrace != "" {
		line("a retried charge", "trace %s", s.RetriedTrace)
	}
	var tr []string
	for _, t := range s.Transitions {
		tr = append(tr, fmt.Sprintf("+%.1fs %s→%s", t.At.Sub(r.Start).Seconds(), t.From, t.To))
	}
	if len(tr) == 0 {
		tr = []string{"none"}
	}
	line("breaker", "%d transitions: %s", len(s.Transitions), strings.Join(tr, ", "))
	line("rejected fast", "breaker %d, deadline %d, throttle %d, bulkhead %d, budget %d",
		s.BreakerRejected, s.FailFast, s.Throttled, s.BulkheadRejected, s.Exhausted)
	line("fallbacks", "%s", counts(s.Fallbacks))
	line("charges", "settled %d, pending %d, declined %d; pending ones settled later %d, confirmed by email %d; dead letters %d",
		s.Outcomes[StateSettled], s.Outcomes[StatePending], s.Outcomes[StateDeclined], s.Outcomes[settledLater], r.Confirmed, r.Dead)
	line("charge latency", "p50 %s, p95 %s, p99 %s (n=%d, as the customer waits, fallbacks included)", ms(s.Charge.P50), ms(s.Charge.P95), ms(s.Charge.P99), s.Charge.N)
	line("read latency", "p50 %s, p95 %s, p99 %s (n=%d)", ms(s.Read.P50), ms(s.Read.P95), ms(s.Read.P99), s.Read.N)
	if v := r.Server; v != nil {
		f := v.Chaos.Faults
		var errs []string
		for _, k := range slices.Sorted(maps.Keys(f.Errors)) {
			errs = append(errs, fmt.Sprintf("%s %d", k, f.Errors[k]))
		}
		if len(errs) == 0 {
			errs = []string{"none"}
		}
		line("server", "%d payments in the ledger; %d charges committed; repeated keys answered: %d by the idempotency interceptor, %d by the ledger; %d refused as in flight",
			v.Payments, v.Committed, v.KeyReplays, v.Replayed, v.KeyConflicts)
		line("faults injected", "%d of %d calls: errors %s; outage %d; responses lost after commit %d; pushback %d; slow %d",
			v.Chaos.Total, f.Calls, strings.Join(errs, ", "), f.Outage, f.Lost, f.Pushback, f.Slow)
	}
	line("reconciliation", "%s", r.Recon)
	if len(r.Recon.Examples) > 0 {
		line("", "for example: %s", strings.Join(r.Recon.Examples, ", "))
	}
}
