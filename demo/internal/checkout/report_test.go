package checkout

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The report says in words what each number counts, and shows a trace ID
// only where the spans went.
func TestReportSaysWhatItCounts(t *testing.T) {
	start := time.Unix(1000, 0)
	base := Snapshot{
		Calls: map[string]int{"Charge": 327, "GetPayment": 76}, LogicalCalls: 403,
		Outcomes:   map[string]int{StateSettled: 235, StatePending: 164, settledLater: 160},
		Fallbacks:  map[string]int{"Charge:pending": 134, "BatchCharge:pending": 30, "GetPayment:cache": 4},
		RetryStops: map[string]int{"rejected": 413, "attempts": 2},
		Transitions: []Transition{
			{At: start.Add(7800 * time.Millisecond), From: "closed", To: "open"},
			{At: start.Add(10800 * time.Millisecond), From: "open", To: "half-open"},
			{At: start.Add(11 * time.Second), From: "half-open", To: "closed"},
		},
		Attempts: 677, Retries: 13, Hedges: 3, Pushbacks: 2, BreakerRejected: 413,
		RetriedTrace: "5141d5d5c1681fa67da6a35a3ab1d970",
	}
	for _, tc := range []struct {
		name   string
		edit   func(*Report)
		want   []string
		reject []string
	}{
		{
			name: "spans exported",
			edit: func(r *Report) { r.Traces = "127.0.0.1:4317" },
			want: []string{
				"calls            403 made by the checkout (327 Charge, 76 GetPayment)",
				"415 failed calls the retry layer gave up on", // the sum of the reasons
				"413 refused before sending, 2 all attempts used",
				"413 calls failed at once without reaching the server: 413 by the open breaker",
				"opened once, closed again once: opened +7.8s, probing +10.8s, closed +11.0s",
				"168 answers given without the server: 134 charges kept as payment pending, 30 batch items kept as payment pending, 4 reads answered with the last good answer",
				"235 paid at once, 164 told payment pending (160 of them paid later",
				"a retried charge is trace 5141d5d5c1681fa67da6a35a3ab1d970",
			},
			reject: []string{"rejected 413", "retries stopped", NoTraces},
		},
		{
			name:   "no spans exported",
			want:   []string{"traces           " + NoTraces},
			reject: []string{"5141d5d5c1681fa67da6a35a3ab1d970"},
		},
		{
			name: "exported, nothing retried",
			edit: func(r *Report) { r.Traces = "127.0.0.1:4317"; r.Stats.RetriedTrace = "" },
			want: []string{"exported to 127.0.0.1:4317; no charge was retried"},
		},
		{
			name: "a quiet run",
			edit: func(r *Report) {
				r.Stats.RetryStops, r.Stats.Transitions, r.Stats.Fallbacks, r.Stats.BreakerRejected = nil, nil, nil, 0
			},
			want: []string{
				"0 failed calls the retry layer gave up on: none",
				"breaker          never opened",
				"0 answers given without the server: none",
			},
		},
		{
			name: "a reason without words is still shown",
			edit: func(r *Report) { r.Stats.RetryStops = map[string]int{"newreason": 1} },
			want: []string{"1 failed calls the retry layer gave up on: 1 newreason"},
		},
		{
			name: "openings by phase",
			edit: func(r *Report) {
				at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
				r.Stats.Phases = []PhaseStart{{"healthy", at(0)}, {"flaky", at(6000)}, {"outage", at(15000)}, {"recovery", at(21000)}, {AfterLoad, at(30000)}}
				r.Stats.Transitions = []Transition{
					{At: at(7800), To: "open"}, {At: at(10800), To: "half-open"}, {At: at(11000), To: "closed"},
					{At: at(15000), To: "open"}, {At: at(18000), To: "half-open"}, {At: at(18100), To: "open"},
					{At: at(21500), To: "half-open"}, {At: at(21600), To: "closed"},
				}
			},
			want:   []string{"breaker          opened 3 times (openings by phase: healthy 0, flaky 1, outage 2, recovery 0), closed again 2 times: opened +7.8s"},
			reject: []string{AfterLoad},
		},
		{
			name: "no opening in any phase",
			edit: func(r *Report) {
				r.Stats.Phases = []PhaseStart{{"flaky", start}, {AfterLoad, start.Add(time.Second)}}
				r.Stats.Transitions = nil
			},
			want: []string{"breaker          never opened (openings by phase: flaky 0)"},
		},
		{
			name: "an opening after the load",
			edit: func(r *Report) {
				r.Stats.Phases = []PhaseStart{{"flaky", start}, {AfterLoad, start.Add(time.Second)}}
				r.Stats.Transitions = []Transition{{At: start.Add(2 * time.Second), To: "open"}}
			},
			want: []string{"opened once (openings by phase: flaky 0, after the load 1)"},
		},
		{
			name: "retry budget",
			edit: func(r *Report) { r.Stats.Exhausted = 5; r.Stats.RetryStops = map[string]int{"budget": 5} },
			want: []string{"5 retry budget spent", "5 retries or hedges refused by the retry budget"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Report{Stats: base, Start: start, Recon: Reconciliation{Expected: 3, Found: 3, Ledger: 3}}
			if tc.edit != nil {
				tc.edit(&r)
			}
			var buf bytes.Buffer
			r.Print(&buf)
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.reject {
				if strings.Contains(out, w) {
					t.Errorf("report has %q:\n%s", w, out)
				}
			}
		})
	}
}

// Every retry stop reason the retry layer reports has words.
func TestStopReasonsHaveWords(t *testing.T) {
	for _, reason := range []string{"deadline", "attempts", "code", "pushback", "committed", "buffer", "budget", "rejected", "canceled"} {
		if w := stopWords[reason]; w == "" || w == reason {
			t.Errorf("stop reason %q has no words", reason)
		}
	}
}

func TestReconciliationInWords(t *testing.T) {
	for _, tc := range []struct {
		r    Reconciliation
		want string
	}{
		{Reconciliation{Expected: 3, Found: 3, Ledger: 3},
			"OK: 3 of 3 orders paid or pending are in the ledger; 0 charged twice, 0 paid but missing, 0 charged although declined, 0 still pending (3 ledger entries read)"},
		{Reconciliation{Expected: 3, Found: 2, Duplicates: 1, Lost: 1, Ledger: 3},
			"FAILED: 2 of 3 orders paid or pending are in the ledger; 1 charged twice, 1 paid but missing, 0 charged although declined, 0 still pending (3 ledger entries read)"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
