package harness

import (
	"math"
	"strings"
	"testing"
	"time"
)

func bench(ns time.Duration, allocs uint64) *testing.BenchmarkResult {
	return &testing.BenchmarkResult{N: 1000, T: 1000 * ns, MemAllocs: 1000 * allocs}
}

func ab(over float64) ABResult {
	return ABResult{Calls: 100, TrimmedA: 100 * time.Microsecond, TrimmedB: time.Duration(float64(100*time.Microsecond) * (1 + over))}
}

// lost is the outcome of the lost-after-commit mode.
func lost(o Outcome) map[string]Outcome { return map[string]Outcome{ModeLost: o} }

func TestGoals(t *testing.T) {
	peers := []Row{
		{Name: "plain client", Cost: bench(15*time.Nanosecond, 0), Modes: lost(Outcome{Calls: 10})},
		{Name: PlainDeadline, MicroOnly: true, Cost: bench(500*time.Nanosecond, 4), LoopbackInstr: 100_000},
		{Name: "failsafe-go retry + breaker + timeout", Cost: bench(3000*time.Nanosecond, 29), CostInstr: 10_000, Modes: lost(Outcome{Calls: 10, Duplicates: 3})},
	}
	cases := []struct {
		name string
		fs   Row
		want []string // one per goal, in order
	}{
		{
			name: "all met",
			fs: Row{Name: "failsoft", Cost: bench(550*time.Nanosecond, 5), CostInstr: 5_000, LoopbackInstr: 101_000,
				Interleaved: MedianPass([]ABResult{ab(0.05), ab(0.02), ab(-0.01)}), Modes: lost(Outcome{Calls: 10})},
			want: []string{
				"at most 6 allocations per call over a no-op invoker: 5, met",
				"less time than failsafe-go's chain and at most 0.6x its instructions over a no-op invoker: 0.18x its time (550 ns to 3000 ns; a plain call that sets its own deadline: 500 ns), 0.50x its instructions, met",
				"a loopback call within 3% of a plain call with the same deadline: +2.0% timed call by call (median of 3 passes of 100 calls each), +1.0% in instructions, met",
				"no duplicate charge with lost responses where the peers make some: 0 (the peers: 3), met",
			},
		},
		{
			name: "faster than failsafe-go but over 0.6x its instructions",
			fs: Row{Name: "failsoft", Cost: bench(550*time.Nanosecond, 5), CostInstr: 6_100, LoopbackInstr: 101_000,
				Interleaved: MedianPass([]ABResult{ab(0.05), ab(0.02), ab(-0.01)}), Modes: lost(Outcome{Calls: 10})},
			want: []string{
				"at most 6 allocations per call over a no-op invoker: 5, met",
				"less time than failsafe-go's chain and at most 0.6x its instructions over a no-op invoker: 0.18x its time (550 ns to 3000 ns; a plain call that sets its own deadline: 500 ns), 0.61x its instructions, not met",
				"a loopback call within 3% of a plain call with the same deadline: +2.0% timed call by call (median of 3 passes of 100 calls each), +1.0% in instructions, met",
				"no duplicate charge with lost responses where the peers make some: 0 (the peers: 3), met",
			},
		},
		{
			name: "none met",
			fs: Row{Name: "failsoft", Cost: bench(3100*time.Nanosecond, 7), CostInstr: 5_000,
				Interleaved: ab(0.045), Modes: lost(Outcome{Calls: 10, Duplicates: 1})},
			want: []string{
				"at most 6 allocations per call over a no-op invoker: 7, not met",
				"less time than failsafe-go's chain and at most 0.6x its instructions over a no-op invoker: 1.03x its time (3100 ns to 3000 ns; a plain call that sets its own deadline: 500 ns), 0.50x its instructions, not met",
				"a loopback call within 3% of a plain call with the same deadline: +4.5% timed call by call (100 calls each), not met",
				"no duplicate charge with lost responses where the peers make some: 1 (the peers: 3), not met",
			},
		},
		{
			name: "not measured",
			fs:   Row{Name: "failsoft"},
			want: nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := append([]Row{tc.fs}, peers...)
			var got []string
			for _, g := range Goals(rows, "failsoft") {
				got = append(got, g.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Goals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}

	t.Run("no peer duplicates", func(t *testing.T) {
		rows := []Row{
			{Name: "failsoft", Modes: lost(Outcome{Calls: 10})},
			{Name: "failsafe-go retry + breaker + timeout", Modes: lost(Outcome{Calls: 10})},
		}
		gs := Goals(rows, "failsoft")
		if len(gs) != 1 || gs[0].Met || !strings.Contains(gs[0].Measured, "does not test it") {
			t.Errorf("Goals = %v, want the duplicate goal unmet for want of a test", gs)
		}
	})
}

func TestMedianPass(t *testing.T) {
	for _, tc := range []struct {
		overs []float64
		want  float64
	}{
		{[]float64{0.01}, 0.01},
		{[]float64{0.04, 0.01, 0.02}, 0.02},
		{[]float64{0.04, 0.01, 0.03, 0.02}, 0.02}, // the lower middle one
		{[]float64{-0.01, 0.05, 0.05}, 0.05},
	} {
		var rs []ABResult
		for _, o := range tc.overs {
			rs = append(rs, ab(o))
		}
		got := MedianPass(rs)
		if over := got.Ratio() - 1; math.Abs(over-tc.want) > 1e-9 || got.Passes != len(rs) {
			t.Errorf("MedianPass(%v) = %+.4f over %d passes, want %+.4f over %d", tc.overs, over, got.Passes, tc.want, len(rs))
		}
	}
}

// TestGoalsChain: the cost goals are checked on the chain they name, the
// duplicate charges on the whole suite, whose scenarios ran.
func TestGoalsChain(t *testing.T) {
	rows := []Row{
		{Name: PlainDeadline, MicroOnly: true, Cost: bench(500*time.Nanosecond, 4)},
		{Name: "failsafe-go retry + breaker + timeout", Cost: bench(3000*time.Nanosecond, 29), Modes: lost(Outcome{Calls: 10, Duplicates: 3})},
		{Name: GoalsChain, MicroOnly: true, Cost: bench(520*time.Nanosecond, 5), Interleaved: ab(0.02)},
		{Name: "failsoft", Cost: bench(610*time.Nanosecond, 5), Interleaved: ab(0.035), Modes: lost(Outcome{Calls: 10})},
	}
	var got []string
	for _, g := range Goals(rows, GoalsChain) {
		got = append(got, g.String())
	}
	want := []string{
		"at most 6 allocations per call over a no-op invoker: 5, met",
		"less time than failsafe-go's chain and at most 0.6x its instructions over a no-op invoker: 0.17x its time (520 ns to 3000 ns; a plain call that sets its own deadline: 500 ns), met",
		"a loopback call within 3% of a plain call with the same deadline: +2.0% timed call by call (100 calls each), met",
		"no duplicate charge with lost responses where the peers make some: 0 for the whole suite (the peers: 3), met",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Goals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if gs := Goals(rows, "failsoft"); len(gs) != 4 || !gs[1].Met || gs[2].Met {
		t.Errorf("the whole suite's goals = %v, want its 0.20x time met and its +3.5%% unmet", gs)
	}
	if gs := Goals(rows[:2], GoalsChain); gs != nil {
		t.Errorf("Goals of a chain the run did not measure = %v, want none", gs)
	}
}
