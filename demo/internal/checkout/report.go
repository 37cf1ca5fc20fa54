package checkout

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
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
	// Traces says where the run's spans went ("" when they were not
	// exported): a trace ID is shown only where it can be looked up.
	Traces string
	// Samples and ByPhase feed the HTML report's charts and phase table.
	Samples []Sample
	ByPhase []PhaseLatency
	// Waterfall is the retried charge's trace, read back from where the
	// spans went, which the HTML report draws; WaterfallMissing says why
	// there is none when the trace was exported.
	Waterfall        *waterfall.Trace
	WaterfallMissing string
}

// NoTraces is what the report says when no spans were exported.
const NoTraces = "not exported in this run; `make demo` with Jaeger (the default, DEMO_JAEGER=1 to require it) exports them and draws the waterfall of one retried charge"

// stopWords says in words why the retry layer gave up on a call, by the
// RetryStopped event's reason.
var stopWords = map[string]string{
	"rejected":  "refused before sending",
	"attempts":  "all attempts used",
	"code":      "status not worth retrying",
	"deadline":  "no time left before the deadline",
	"budget":    "retry budget spent",
	"pushback":  "server asked not to retry",
	"committed": "stream already answered",
	"buffer":    "stream outgrew its replay buffer",
	"canceled":  "caller canceled",
}

// breakerWords names a breaker's move into a state.
var breakerWords = map[string]string{"open": "opened", "half-open": "probing", "closed": "closed"}

// fallbackWords says in words how a fallback answered, by level.
var fallbackWords = map[string]string{
	"pending":  "kept as payment pending",
	"cache":    "answered with the last good answer",
	"static":   "answered with a fixed answer",
	"function": "answered by a fallback function",
}

// phrases lists m's non-zero counts as "n words", largest first, naming
// each key by words[key] (the key itself when words has none).
func phrases(m map[string]int, words map[string]string) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		if m[k] == 0 {
			continue
		}
		w, ok := words[k]
		if !ok {
			w = k
		}
		parts = append(parts, fmt.Sprintf("%d %s", m[k], w))
	}
	return strings.Join(parts, ", ")
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// fallbackCounts turns "Method:level" counts into counts by what the
// customer got, with the method in words: "charges kept as payment
// pending".
func fallbackCounts(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, n := range m {
		method, level, _ := strings.Cut(k, ":")
		w, ok := fallbackWords[level]
		if !ok {
			w = "answered by fallback " + level
		}
		out[methodNoun(method)+" "+w] += n
	}
	return out
}

func methodNoun(method string) string {
	switch method {
	case "Charge":
		return "charges"
	case "BatchCharge":
		return "batch items"
	case "GetPayment":
		return "reads"
	}
	return method + " calls"
}

// openingsPerPhase counts the breaker openings in each phase, in the
// order the phases ran: "healthy 0, flaky 0, outage 1, recovery 0". The
// time after the load is shown only when the breaker opened then.
func openingsPerPhase(phases []PhaseStart, transitions []Transition) string {
	n := make([]int, len(phases))
	for _, t := range transitions {
		if t.To != "open" {
			continue
		}
		// The phase running then: the last one started at or before t.
		for i := len(phases) - 1; i >= 0; i-- {
			if !phases[i].At.After(t.At) {
				n[i]++
				break
			}
		}
	}
	var parts []string
	for i, p := range phases {
		if p.Name == AfterLoad && n[i] == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", p.Name, n[i]))
	}
	return "openings by phase: " + strings.Join(parts, ", ")
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// Print writes the report: one line per subject, each saying what it
// counts.
func (r *Report) Print(w io.Writer) {
	s := r.Stats
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-16s "+format+"\n", append([]any{label}, args...)...)
	}
	fmt.Fprintln(w, "=== failsoft demo report ===")
	line("calls", "%d made by the checkout (%s)", s.LogicalCalls, phrases(s.Calls, nil))
	line("attempts", "%d sent for them: %d retries of a failed attempt (%d after waiting as the server asked), %d hedges of a slow read",
		s.Attempts, s.Retries, s.Pushbacks, s.Hedges)
	line("not retried", "%d failed calls the retry layer gave up on: %s", sum(s.RetryStops), orNone(phrases(s.RetryStops, stopWords)))
	refused := map[string]int{
		"by the open breaker": int(s.BreakerRejected), "with too little time left": int(s.FailFast),
		"by the overload throttle": int(s.Throttled), "by a full bulkhead": int(s.BulkheadRejected),
	}
	line("refused locally", "%d calls failed at once without reaching the server: %s", sum(refused), orNone(phrases(refused, nil)))
	if s.Exhausted > 0 {
		line("", "%d retries or hedges refused by the retry budget", s.Exhausted)
	}
	opened, closed := 0, 0
	var tr []string
	for _, t := range s.Transitions {
		switch t.To {
		case "open":
			opened++
		case "closed":
			closed++
		}
		tr = append(tr, fmt.Sprintf("%s +%.1fs", breakerWords[t.To], t.At.Sub(r.Start).Seconds()))
	}
	perPhase := ""
	if len(s.Phases) > 0 {
		perPhase = " (" + openingsPerPhase(s.Phases, s.Transitions) + ")"
	}
	if len(tr) == 0 {
		line("breaker", "never opened%s", perPhase)
	} else {
		line("breaker", "opened %s%s, closed again %s: %s", times(opened), perPhase, times(closed), strings.Join(tr, ", "))
	}
	fb := fallbackCounts(s.Fallbacks)
	line("fallbacks", "%d answers given without the server: %s", sum(fb), orNone(phrases(fb, nil)))
	line("orders charged", "%d paid at once, %d told payment pending (%d of them paid later, %d confirmed by email), %d declined; %d pending charges given up for good",
		s.Outcomes[StateSettled], s.Outcomes[StatePending], s.Outcomes[settledLater], r.Confirmed, s.Outcomes[StateDeclined], r.Dead)
	line("charge latency", "p50 %s, p95 %s, p99 %s over %d orders, as the customer waits (pending answers included)", ms(s.Charge.P50), ms(s.Charge.P95), ms(s.Charge.P99), s.Charge.N)
	line("read latency", "p50 %s, p95 %s, p99 %s over %d payment reads", ms(s.Read.P50), ms(s.Read.P95), ms(s.Read.P99), s.Read.N)
	if v := r.Server; v != nil {
		line("server", "%d payments in the ledger, %d charges written; repeated keys answered with the first payment: %d by the idempotency interceptor, %d by the ledger; %d refused as still in flight",
			v.Payments, v.Committed, v.KeyReplays, v.Replayed, v.KeyConflicts)
		f := v.Chaos.Faults
		kinds := map[string]int{
			"outage": int(f.Outage), "responses lost after commit": int(f.Lost), "pushback": int(f.Pushback),
		}
		for code, n := range f.Errors {
			kinds[code+" errors"] += int(n)
		}
		line("faults injected", "%d into %d calls under chaos rules (%s); %d calls slowed down",
			v.Chaos.Total, f.Calls, orNone(phrases(kinds, nil)), f.Slow)
	}
	line("reconciliation", "%s", r.Recon)
	if len(r.Recon.Examples) > 0 {
		line("", "for example: %s", strings.Join(r.Recon.Examples, ", "))
	}
	switch {
	case r.Traces == "":
		line("traces", "%s", NoTraces)
	case s.RetriedTrace != "":
		line("traces", "exported to %s; a retried charge is trace %s", r.Traces, s.RetriedTrace)
	default:
		line("traces", "exported to %s; no charge was retried", r.Traces)
	}
}
