package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRecoveryOf(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	heal := ms(3000)
	for _, tc := range []struct {
		name string
		recs []record
		want Recovery
	}{
		{
			name: "no call after the heal fails",
			recs: []record{
				{Start: ms(100), End: ms(101)},             // failed during the outage
				{Start: ms(2990), End: ms(2999)},           // failed just before the heal
				{Start: ms(2995), End: ms(3020), OK: true}, // retried past the heal
				{Start: ms(3500), End: ms(3501), OK: true},
				{Start: ms(4000), End: ms(4001), OK: true},
			},
			want: Recovery{DownCalls: 3, DownAttempts: 7, SoonCalls: 1, SoonOK: 1, LaterCalls: 1, LaterOK: 1},
		},
		{
			name: "failures after the heal",
			recs: []record{
				{Start: ms(2990), End: ms(3100)}, // started before, failed after the heal
				{Start: ms(3200), End: ms(3201)},
				{Start: ms(3999), End: ms(4000), OK: true},
				{Start: ms(4100), End: ms(4150)}, // the last failure
				{Start: ms(4200), End: ms(4201), OK: true},
			},
			want: Recovery{DownCalls: 1, DownAttempts: 7, SoonCalls: 2, SoonOK: 1, LaterCalls: 2, LaterOK: 1,
				LastFailure: ms(1150), Failed: true},
		},
		{
			name: "nothing after the heal",
			recs: []record{{Start: ms(10), End: ms(20)}},
			want: Recovery{DownCalls: 1, DownAttempts: 7},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := recoveryOf(tc.recs, heal, 7); got != tc.want {
				t.Errorf("recoveryOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOutcomeAdd(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b Outcome
		want Outcome
	}{
		{
			name: "sums",
			a:    Outcome{Calls: 10, OK: 8, Attempts: 12, Window: time.Second, Duplicates: 1, FailedCommitted: 2, Opens: 1},
			b:    Outcome{Calls: 20, OK: 15, Attempts: 25, Window: 2 * time.Second, Duplicates: 3, FailedCommitted: 1, Opens: 2},
			want: Outcome{Calls: 30, OK: 23, Attempts: 37, Window: 3 * time.Second, Duplicates: 4, FailedCommitted: 3, Opens: 3},
		},
		{
			name: "no breaker stays no breaker",
			a:    Outcome{Calls: 1, Opens: -1},
			b:    Outcome{Calls: 1, Opens: -1},
			want: Outcome{Calls: 2, Opens: -1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.a
			got.add(tc.b)
			if got != tc.want {
				t.Errorf("add = %+v, want %+v", got, tc.want)
			}
		})
	}
	o := Outcome{Calls: 300, OK: 150, Attempts: 330, Window: 500 * time.Millisecond}
	if o.Success() != 0.5 || o.AttemptsPerCall() != 1.1 || o.Goodput() != 300 {
		t.Errorf("success %v, attempts per call %v, goodput %v; want 0.5, 1.1, 300", o.Success(), o.AttemptsPerCall(), o.Goodput())
	}
	if (Outcome{}).Success() != 0 || (Outcome{}).Goodput() != 0 {
		t.Error("an empty outcome has a success rate or a goodput")
	}
}

// modeRows builds rows with the outcome of every mode for failsoft, the
// plain client and two retrying peers.
func modeRows(fs func(mode string) Outcome) []Row {
	peer := func(ok int) map[string]Outcome {
		m := map[string]Outcome{}
		for _, mode := range Modes() {
			if !mode.FailsoftOnly {
				m[mode.Name] = Outcome{Calls: 1000, OK: ok, Attempts: 1250, Window: time.Second, Opens: -1}
			}
		}
		return m
	}
	f := map[string]Outcome{}
	for _, mode := range Modes() {
		f[mode.Name] = fs(mode.Name)
	}
	return []Row{
		{Name: "plain client", Modes: peer(800)},
		{Name: PlainDeadline, MicroOnly: true},
		{Name: "go-grpc-middleware retry + timeout", Modes: peer(991)},
		{Name: "failsafe-go retry + breaker + timeout", Modes: peer(985)},
		{Name: Failsoft, Modes: f},
	}
}

func TestModeGoals(t *testing.T) {
	good := func(mode string) Outcome {
		o := Outcome{Calls: 1000, OK: 995, Attempts: 1040, Window: time.Second, Opens: 0}
		switch mode {
		case ModeTransient:
			o.OK = 986 // half a point under the best peer's 99.1%
		case ModeLost:
			o.FailedCommitted = 10
		case ModeOutage:
			o.Recovery = Recovery{DownCalls: 600, DownAttempts: 30, SoonCalls: 250, SoonOK: 240, LaterCalls: 250, LaterOK: 248,
				Failed: true, LastFailure: time.Second}
		case ModeOutageOff:
			o.Recovery = Recovery{DownCalls: 600, DownAttempts: 690, SoonCalls: 250, SoonOK: 250, LaterCalls: 250, LaterOK: 250}
		}
		if strings.HasPrefix(mode, "1.5x overload") {
			o.OK = 720 // 90% of the plain client's goodput
			o.Attempts = 1200
		}
		return o
	}
	bad := func(mode string) Outcome {
		o := Outcome{Calls: 1000, OK: 980, Attempts: 1600, Window: time.Second, Duplicates: 1, FailedCommitted: 11, Opens: 1}
		switch mode {
		case ModeTransient:
			o.OK = 985
		case ModeOutage, ModeOutageOff:
			o.Recovery = Recovery{DownCalls: 600, DownAttempts: 700, SoonCalls: 250, LaterCalls: 250, LaterOK: 247,
				Failed: true, LastFailure: time.Second + time.Millisecond}
		}
		if strings.HasPrefix(mode, "1.5x overload") {
			o.OK = 719
			o.Attempts = 1201
		}
		return o
	}
	want := []string{
		"20% transient UNAVAILABLE, success: within 0.5 point of the best retrying peer",
		"20% transient UNAVAILABLE, attempts per call: ≤ 1.30",
		"1 of 3 backends fails every call, success: ≥ 99%",
		"1 of 3 backends fails every call, attempts per call: ≤ 1.55",
		"1 of 3 backends answers late, success: ≥ 99%",
		"1 of 3 backends answers late, attempts per call: ≤ 1.55",
		"charge responses lost after commit, OK: ≥ 99%",
		"charge responses lost after commit, duplicate charges: 0",
		"charge responses lost after commit, failed but committed: ≤ 1%",
	}
	for _, r := range []Reject{RejectExhausted, RejectPushback, RejectUnavailable} {
		want = append(want, ModeOverload(r)+", goodput/s (of the plain client's): ≥ 90% of the plain client's",
			ModeOverload(r)+", attempts at server per call offered: ≤ 1.2x")
	}
	want = append(want, ModeFleetOverload+", goodput/s (of the plain client's): ≥ 90% of the plain client's",
		ModeFleetOverload+", attempts at server per call offered: ≤ 1.2x")
	for _, m := range []string{ModeOutage + ", attempts per call during the outage: ≤ 0.05", ModeOutageOff + ", attempts per call during the outage: ≤ 1.15"} {
		mode, _, _ := strings.Cut(m, ", attempts")
		want = append(want, m, mode+", success from 1 s after the heal: ≥ 99%", mode+", last failure after the heal: within 1 s")
	}
	want = append(want, "3% flakiness at ~1,000 calls/s, breaker opens: never")

	for _, tc := range []struct {
		name string
		fs   func(string) Outcome
		met  bool
	}{
		{"every goal met at its limit", good, true},
		{"every goal missed just past its limit", bad, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := ModeGoals(modeRows(tc.fs))
			var names []string
			for _, g := range gs {
				names = append(names, g.Name)
				if g.Met != tc.met {
					t.Errorf("%s: %s, met = %v, want %v", g.Name, g.Measured, g.Met, tc.met)
				}
			}
			if strings.Join(names, "\n") != strings.Join(want, "\n") {
				t.Errorf("goals:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
			}
		})
	}

	t.Run("unmeasured goals are left out", func(t *testing.T) {
		rows := []Row{{Name: Failsoft, Modes: map[string]Outcome{
			ModeTransient:                 {Calls: 100, OK: 99, Attempts: 110},
			ModeOverload(RejectExhausted): {Calls: 100, OK: 99, Attempts: 100, Window: time.Second},
		}}}
		var got []string
		for _, g := range ModeGoals(rows) {
			got = append(got, g.String())
		}
		// No peer: no transient reference; no plain client: no goodput reference.
		want := []string{
			"20% transient UNAVAILABLE, attempts per call: ≤ 1.30: 1.10, met",
			ModeOverload(RejectExhausted) + ", attempts at server per call offered: ≤ 1.2x: 1.00x, met",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("goals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

func TestRefs(t *testing.T) {
	rows := modeRows(func(string) Outcome { return Outcome{Calls: 1000, OK: 999} })
	r := refs(rows, ModeTransient)
	if r.Plain == nil || r.Plain.OK != 800 {
		t.Errorf("plain reference = %+v, want the plain client's", r.Plain)
	}
	// failsoft's own 99.9% is not a peer's.
	if r.Best != 0.991 || r.BestName != "go-grpc-middleware retry + timeout" {
		t.Errorf("best retrying peer = %s at %v, want go-grpc-middleware retry + timeout at 0.991", r.BestName, r.Best)
	}
	if r := refs(rows, ModeOutageOff); r.Plain != nil || r.Best >= 0 {
		t.Errorf("references of a failsoft-only mode = %+v, want none", r)
	}
}

func TestTwice(t *testing.T) {
	errFlaky := errors.New("exit status 2")
	for _, tc := range []struct {
		name      string
		fails     int // calls that fail before one succeeds
		cancelled bool
		wantCalls int
		wantErr   bool
	}{
		{"first try", 0, false, 1, false},
		{"second try", 1, false, 2, false},
		{"fails twice", 2, false, 2, true},
		{"no second try once cancelled", 1, true, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			calls := 0
			v, err := twice(ctx, func() (int, error) {
				calls++
				if calls <= tc.fails {
					return 0, errFlaky
				}
				return 42, nil
			})
			if calls != tc.wantCalls || (err != nil) != tc.wantErr || (err == nil && v != 42) {
				t.Errorf("twice: %d calls, %v, %v; want %d calls, error %v", calls, v, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

// TestFailedMeasurementKeepsRow: a measurement that failed marks its own
// cells with the reason and leaves the rest of the row.
func TestFailedMeasurementKeepsRow(t *testing.T) {
	var r Row
	r.Name = Failsoft
	r.Cost = bench(550*time.Nanosecond, 5)
	r.LoopbackInstr = 200_000
	r.fail(colCostInstr, errors.New("exit status 2: ==1234== Valgrind's memory management: out of memory"))
	r.fail(colCostInstr, errors.New("a later failure of the same measurement"))
	r.fail(ModeLost, fmt.Errorf("listen tcp 127.0.0.1:0: bind: address already in use"))
	r.Modes = map[string]Outcome{ModeTransient: {Calls: 1000, OK: 990, Attempts: 1100}}
	if r.fail(colTail, nil) {
		t.Error("fail(nil) reported a failure")
	}
	var buf bytes.Buffer
	Markdown(&buf, []Row{r}, DefaultConfig(), 1)
	out := buf.String()
	var row string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "| failsoft |") {
			row = line
			break
		}
	}
	cells := strings.Split(strings.Trim(row, "| "), " | ")
	want := []string{"failsoft", "550", "5", "failed: exit status 2: ==1234== Valgrind's memory management: out of…",
		"failed: exit status 2: ==1234== Valgrind's memory management: out of…", na, na, "200000", na, na, na}
	if strings.Join(cells, " | ") != strings.Join(want, " | ") {
		t.Errorf("row:\n%s\nwant:\n%s", strings.Join(cells, " | "), strings.Join(want, " | "))
	}
	for _, s := range []string{
		"failsoft, instructions/op: failed twice: exit status 2: ==1234== Valgrind's memory management: out of memory\n",
		"| 20% of attempts fail UNAVAILABLE at random (1000 calls) | success | 99.0% |",
		"| 20% of charge responses lost after the charge committed (3000 calls; failsoft: the README's Charge policy) | OK | failed: listen tcp 127.0.0.1:0: bind: address already in use | ≥ 99% | – |",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
}
