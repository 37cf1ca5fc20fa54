package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// Row is everything measured for one chain.
type Row struct {
	Name      string
	Pending   bool
	MicroOnly bool // a reference row: Go benchmarks only
	Err       error

	Cost     *testing.BenchmarkResult // nil: not applicable or not run
	Loopback *testing.BenchmarkResult
	// Instructions per call of the Go benchmarks (see Instructions); zero
	// when not measured.
	CostInstr, LoopbackInstr float64
	// CostHotLines is the code a call over a no-op invoker runs
	// (Count.HotLines); zero when not measured.
	CostHotLines int
	// Interleaved is the loopback call timed call by call in alternation
	// with the plain client that sets the same deadline (see Interleaved);
	// Calls is zero when not measured.
	Interleaved ABResult

	Outage    OutageResult
	Transient RateResult
	Lost      RateResult
	Tail      TailResult
	TailHedge TailResult
	Overload  OverloadResult
}

// RunOptions selects what Run measures.
type RunOptions struct {
	// Micro runs the Go benchmarks (interceptor cost, loopback call).
	Micro bool
	// Rounds runs the Go benchmarks this many times, chains interleaved,
	// and keeps each chain's fastest round, so that a noisy neighbour
	// slows one round of every chain rather than all rounds of one.
	Rounds int
	// Only, when set, keeps the chains whose name contains it (and the
	// plain client, the reference of the overload goodput).
	Only string
	// Progress, when set, hears one line per step.
	Progress io.Writer
	// Instructions, when set, measures the instructions per call of a
	// chain's Go benchmark (see Instructions).
	Instructions func(ctx context.Context, chain string, m Micro) (Count, error)
	// Interleaved, when positive, times this many loopback calls of each
	// chain in alternation with the plain client that sets the same
	// deadline (see Interleaved), in InterleavedPasses passes over every
	// chain (at least one), and keeps each chain's median pass.
	Interleaved       int
	InterleavedPasses int
}

// Run measures every chain in one process, one chain at a time, against
// servers started for each scenario.
func Run(ctx context.Context, cfg Config, o RunOptions) []Row {
	var specs []Spec
	for _, spec := range Specs() {
		if o.Only != "" && !strings.HasPrefix(spec.Name, "plain client") && !strings.Contains(spec.Name, o.Only) {
			continue
		}
		specs = append(specs, spec)
	}
	rows := make([]Row, len(specs))
	for i, spec := range specs {
		rows[i] = Row{Name: spec.Name}
		if _, err := spec.Build(cfg.Params); err != nil {
			if errors.Is(err, ErrPending) {
				rows[i].Pending = true
			} else {
				rows[i].Err = err
			}
			o.step(spec.Name, err.Error())
		}
	}
	if o.Micro {
		for round := range max(1, o.Rounds) {
			for i, spec := range specs {
				if ctx.Err() == nil && !rows[i].Pending && rows[i].Err == nil {
					o.step(spec.Name, fmt.Sprintf("Go benchmarks, round %d", round+1))
					rows[i].micro(spec, cfg.Params)
				}
			}
		}
	}
	if o.Interleaved > 0 {
		var ref *Spec
		for i := range specs {
			if specs[i].Name == PlainDeadline {
				ref = &specs[i]
			}
		}
		// Passes go over every chain in turn, so that a slow spell of the
		// machine falls on one pass of several chains, which the median
		// pass of each leaves out.
		passes := make([][]ABResult, len(specs))
		for pass := range max(1, o.InterleavedPasses) {
			for i, spec := range specs {
				if ref == nil || ctx.Err() != nil || rows[i].Pending || rows[i].Err != nil {
					continue
				}
				o.step(spec.Name, fmt.Sprintf("loopback calls interleaved with the plain client's, pass %d", pass+1))
				res, err := Interleaved(*ref, spec, cfg.Params, Loopback, o.Interleaved)
				if !rows[i].fail(err) {
					passes[i] = append(passes[i], res)
				}
			}
		}
		for i, rs := range passes {
			if len(rs) > 0 && rows[i].Err == nil {
				rows[i].Interleaved = MedianPass(rs)
			}
		}
	}
	if o.Instructions != nil {
		for i, spec := range specs {
			for _, m := range []Micro{Interceptors, Loopback} {
				if ctx.Err() != nil || rows[i].Pending || rows[i].Err != nil || !m.Applies(spec) {
					continue
				}
				o.step(spec.Name, fmt.Sprintf("instructions per call, %s", m))
				n, err := o.Instructions(ctx, spec.Name, m)
				if rows[i].fail(err) {
					continue
				}
				if m == Interceptors {
					rows[i].CostInstr, rows[i].CostHotLines = n.Instructions, n.HotLines
				} else {
					rows[i].LoopbackInstr = n.Instructions
				}
			}
		}
	}
	for i, spec := range specs {
		rows[i].MicroOnly = spec.MicroOnly
		if ctx.Err() == nil && !rows[i].Pending && rows[i].Err == nil && !spec.MicroOnly {
			rows[i].scenarios(ctx, spec, cfg, o)
		}
	}
	rounds := max(1, cfg.OverloadRounds)
	round := cfg
	round.OverloadDuration = cfg.OverloadDuration / time.Duration(rounds)
	for n := range rounds {
		round.Seed = cfg.Seed + uint64(n)
		for i, spec := range specs {
			if ctx.Err() != nil || rows[i].Pending || rows[i].Err != nil || spec.MicroOnly {
				continue
			}
			o.step(spec.Name, fmt.Sprintf("overload, round %d", n+1))
			res, err := runOverload(ctx, spec, round)
			if rows[i].fail(err) {
				continue
			}
			if n == 0 {
				rows[i].Overload = res
			} else {
				rows[i].Overload.add(res)
			}
		}
	}
	return rows
}

func (o RunOptions) step(chain, what string) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s: %s\n", chain, what)
	}
}

func (r *Row) fail(err error) bool {
	if err != nil && r.Err == nil {
		r.Err = err
	}
	return err != nil
}

// micro runs the Go benchmarks once and keeps the faster result.
func (r *Row) micro(spec Spec, p Params) {
	faster := func(old *testing.BenchmarkResult, f func(*testing.B)) *testing.BenchmarkResult {
		res := testing.Benchmark(f)
		if res.N == 0 { // the benchmark failed
			return old
		}
		if old == nil || res.NsPerOp() < old.NsPerOp() {
			return &res
		}
		return old
	}
	if f, err := Bench(spec, p, Interceptors); !r.fail(err) && f != nil {
		r.Cost = faster(r.Cost, f)
	}
	if f, err := Bench(spec, p, Loopback); !r.fail(err) && f != nil {
		r.Loopback = faster(r.Loopback, f)
	}
}

func (r *Row) scenarios(ctx context.Context, spec Spec, cfg Config, o RunOptions) {
	var err error
	o.step(spec.Name, "total outage")
	r.Outage, err = runOutage(ctx, spec, cfg)
	r.fail(err)
	o.step(spec.Name, "transient failures")
	r.Transient, err = runTransient(ctx, spec, cfg)
	r.fail(err)
	o.step(spec.Name, "lost responses")
	r.Lost, err = runLost(ctx, spec, cfg)
	r.fail(err)
	o.step(spec.Name, "slow tail")
	r.Tail, err = runTail(ctx, spec, cfg, false)
	r.fail(err)
	r.TailHedge, err = runTail(ctx, spec, cfg, true)
	r.fail(err)
}

// Markdown writes the rows as one markdown table, followed by the settings
// it was measured with.
func Markdown(w io.Writer, rows []Row, cfg Config, rounds int) {
	var plain *Row
	for i := range rows {
		if rows[i].Name == "plain client" {
			plain = &rows[i]
		}
	}
	cols := []string{
		"chain",
		"interceptors ns/op",
		"allocs/op",
		"instructions/op",
		"hot code KiB/op",
		"loopback call µs",
		"allocs/call",
		"instructions/call",
		"interleaved with " + PlainDeadline,
		"outage: attempts per call",
		fmt.Sprintf("%.0f%% transient: success", cfg.TransientRate*100),
		fmt.Sprintf("%.0f%% lost responses: success", cfg.LostRate*100),
		"duplicate charges",
		fmt.Sprintf("%.0f%% slow tail: p99", cfg.SlowRate*100),
		"p99 hedged",
		"overload: goodput/s",
		"attempts at server/s",
		"success",
		"overload: breaker opens",
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(cols)))
	for _, r := range rows {
		cells := []string{r.Name}
		switch {
		case r.Pending:
			for range len(cols) - 1 {
				cells = append(cells, "pending")
			}
		case r.Err != nil && r.Outage.Calls == 0:
			cells = append(cells, "error: "+r.Err.Error())
			for range len(cols) - 2 {
				cells = append(cells, "")
			}
		default:
			cells = append(cells, r.cells(plain)...)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	p := cfg.Params
	fmt.Fprintf(w, "\nAll chains: %d attempts per call, backoff %v doubling to %v, retried codes UNAVAILABLE and RESOURCE_EXHAUSTED, "+
		"call deadline %v; the peers' breakers open after %d consecutive failures and probe after %v (failsoft's breaker keeps its "+
		"default trip rule, opens for %v and doubles that while probes fail); hedging sends a second attempt after %v. "+
		"Interceptor cost: ClientConn.Invoke on a connection built with the chain's dial options, whose innermost interceptor "+
		"answers without sending; the plain client's figure is the floor every chain pays. A loopback call is one unary call to a "+
		"server on 127.0.0.1 in the same process (allocations count both sides); the Go benchmarks run in %d interleaved rounds and "+
		"each chain keeps its fastest. Closed-loop scenarios: %d workers; outage %d calls, transient %d, lost responses %d, "+
		"slow tail %d (%.0f%% of attempts take %v). Overload: a server that works on %d calls at once, %v each (%.0f calls/s), "+
		"rejecting the excess at once with RESOURCE_EXHAUSTED, offered %.1fx its capacity (%.0f calls/s, Poisson arrivals) for %v in %d rounds, chains interleaved; "+
		"goodput in brackets is relative to the plain client, attempts in brackets per logical call offered. "+
		"Faults are a function of seed %d and the call, so every chain meets the same ones.\n",
		p.Attempts, p.Backoff, p.MaxBackoff, p.Timeout, p.BreakerFailures, p.BreakerDelay, p.BreakerDelay, p.HedgeDelay, max(1, rounds),
		cfg.Workers, cfg.OutageCalls, cfg.TransientCalls, cfg.LostCalls, cfg.TailCalls, cfg.SlowRate*100, cfg.Slow,
		cfg.Capacity, cfg.Service, float64(cfg.Capacity)/cfg.Service.Seconds(), cfg.Load,
		cfg.Load*float64(cfg.Capacity)/cfg.Service.Seconds(), cfg.OverloadDuration, max(1, cfg.OverloadRounds), cfg.Seed)
	for _, r := range rows {
		if r.Err != nil && !r.Pending {
			fmt.Fprintf(w, "\n%s: %v\n", r.Name, r.Err)
		}
	}
	if s := compare(rows); s != "" {
		fmt.Fprintf(w, "\n%s\n", s)
	}
	for _, c := range []struct{ chain, title string }{
		{GoalsChain, "failsoft's cost goals in this run, for the chain they name (deadline, key, retry, breaker, telemetry with no-op providers: the suite without its adaptive throttle):"},
		{Failsoft, "The same goals for the whole suite, which adds the adaptive throttle:"},
	} {
		if gs := Goals(rows, c.chain); len(gs) > 0 {
			fmt.Fprintf(w, "\n%s\n", c.title)
			for _, g := range gs {
				fmt.Fprintf(w, "- %s\n", g)
			}
		}
	}
}

// Goal is one of failsoft's cost goals and where a run put it.
type Goal struct {
	Name     string // what the goal asks
	Measured string // what the run measured
	Met      bool
}

func (g Goal) String() string {
	verdict := "not met"
	if g.Met {
		verdict = "met"
	}
	return fmt.Sprintf("%s: %s, %s", g.Name, g.Measured, verdict)
}

// The goals' limits.
const (
	goalAllocs       = 6
	goalCost         = 600 * time.Nanosecond
	goalLoopbackOver = 0.03
)

// Goals checks the row of chain (GoalsChain or failsoft's) against
// failsoft's cost goals: at most 6 allocations and 600 ns per call over a
// no-op invoker, less than failsafe-go's chain in the same run, a loopback
// call within 3% of a plain call with the same deadline; and the whole
// suite's row against the goal of no duplicate charge where the retrying
// peers make some (the scenarios run on the whole suite only). A goal the
// run did not measure is left out.
func Goals(rows []Row, chain string) []Goal {
	by := map[string]*Row{}
	for i := range rows {
		by[rows[i].Name] = &rows[i]
	}
	fs, whole := by[chain], by[Failsoft]
	if fs == nil || fs.Pending {
		return nil
	}
	var gs []Goal
	if c := fs.Cost; c != nil {
		gs = append(gs,
			Goal{"at most 6 allocations per call over a no-op invoker",
				fmt.Sprintf("%d", c.AllocsPerOp()), c.AllocsPerOp() <= goalAllocs},
			Goal{"at most 600 ns per call over a no-op invoker",
				fmt.Sprintf("%d ns", c.NsPerOp()) + plainDeadlineCost(by[PlainDeadline]), time.Duration(c.NsPerOp()) <= goalCost})
		if fg := by["failsafe-go retry + breaker + timeout"]; fg != nil && fg.Cost != nil && fg.Cost.NsPerOp() > 0 {
			m := fmt.Sprintf("%.2fx its time", float64(c.NsPerOp())/float64(fg.Cost.NsPerOp()))
			met := c.NsPerOp() < fg.Cost.NsPerOp()
			if fs.CostInstr > 0 && fg.CostInstr > 0 {
				m += fmt.Sprintf(", %.2fx its instructions", fs.CostInstr/fg.CostInstr)
				met = met && fs.CostInstr < fg.CostInstr
			}
			gs = append(gs, Goal{"less than failsafe-go's chain over a no-op invoker", m, met})
		}
	}
	if ab := fs.Interleaved; ab.Calls > 0 && ab.TrimmedA > 0 {
		over := ab.Ratio() - 1
		m := fmt.Sprintf("%+.1f%% timed call by call (%s)", 100*over, ab.describe())
		if ref := by[PlainDeadline]; ref != nil && fs.LoopbackInstr > 0 && ref.LoopbackInstr > 0 {
			m += fmt.Sprintf(", %+.1f%% in instructions", 100*(fs.LoopbackInstr/ref.LoopbackInstr-1))
		}
		gs = append(gs, Goal{"a loopback call within 3% of a plain call with the same deadline", m, over <= goalLoopbackOver})
	}
	if whole != nil && whole.Lost.Calls > 0 {
		var peers []string
		peerDup := false
		for _, r := range rows {
			if r.Name == Failsoft || r.Name == "plain client" || r.MicroOnly || r.Pending || r.Lost.Calls == 0 {
				continue
			}
			peers = append(peers, fmt.Sprintf("%d", r.Lost.Duplicates))
			peerDup = peerDup || r.Lost.Duplicates > 0
		}
		m := fmt.Sprintf("%d", whole.Lost.Duplicates)
		if whole != fs {
			m += " for the whole suite"
		}
		if len(peers) > 0 {
			m += " (the peers: " + strings.Join(peers, ", ") + ")"
		}
		if !peerDup {
			m += "; no peer made one, so this run does not test it"
		}
		gs = append(gs, Goal{"no duplicate charge with lost responses where the peers make some", m, whole.Lost.Duplicates == 0 && peerDup})
	}
	return gs
}

// plainDeadlineCost names the floor a call with its own deadline sets in
// the same run, which the 600 ns goal includes.
func plainDeadlineCost(r *Row) string {
	if r == nil || r.Cost == nil {
		return ""
	}
	return fmt.Sprintf(" (a plain call that sets its own deadline: %d ns)", r.Cost.NsPerOp())
}

// compare states failsoft's Go benchmark figures against its references
// in the same run: the interceptor cost of the peers that set a deadline
// too, and the loopback call of the plain client with and without the
// caller's own deadline; by time, and by instructions when they were
// counted.
func compare(rows []Row) string {
	by := map[string]*Row{}
	for i := range rows {
		by[rows[i].Name] = &rows[i]
	}
	fs := by[Failsoft]
	if fs == nil || fs.Cost == nil || fs.Loopback == nil {
		return ""
	}
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return ""
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	over := func(a, b float64) string {
		if a == 0 || b == 0 {
			return ""
		}
		return fmt.Sprintf("%+.1f%%", 100*(a/b-1))
	}
	var parts []string
	for _, name := range []string{"failsafe-go retry + breaker + timeout", "go-grpc-middleware retry + timeout", PlainDeadline} {
		r := by[name]
		if r == nil || r.Cost == nil {
			continue
		}
		p := fmt.Sprintf("%s the time of %s (%d ns, %d allocs)", ratio(float64(fs.Cost.NsPerOp()), float64(r.Cost.NsPerOp())),
			name, r.Cost.NsPerOp(), r.Cost.AllocsPerOp())
		if x := ratio(fs.CostInstr, r.CostInstr); x != "" {
			p += fmt.Sprintf(" and %s its instructions", x)
		}
		if fs.CostHotLines > 0 && r.CostHotLines > 0 {
			p += fmt.Sprintf(", running %s KiB of code to its %s KiB", kib(fs.CostHotLines), kib(r.CostHotLines))
		}
		parts = append(parts, p)
	}
	for _, name := range []string{"plain client", PlainDeadline} {
		r := by[name]
		if r == nil || r.Loopback == nil {
			continue
		}
		p := fmt.Sprintf("a loopback call %s over the %s's in time (%+d allocs)",
			over(float64(fs.Loopback.NsPerOp()), float64(r.Loopback.NsPerOp())), name, fs.Loopback.AllocsPerOp()-r.Loopback.AllocsPerOp())
		if x := over(fs.LoopbackInstr, r.LoopbackInstr); x != "" {
			p += fmt.Sprintf(", %s in instructions", x)
		}
		if name == PlainDeadline && fs.Interleaved.Calls > 0 {
			p += fmt.Sprintf(", %+.1f%% timed call by call in alternation (%s)", 100*(fs.Interleaved.Ratio()-1), fs.Interleaved.describe())
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("failsoft in this run: interceptors %d ns and %d allocs per call; %s.",
		fs.Cost.NsPerOp(), fs.Cost.AllocsPerOp(), strings.Join(parts, "; "))
}

const na = "–"

func (r *Row) cells(plain *Row) []string {
	var c []string
	if r.Cost != nil {
		c = append(c, fmt.Sprintf("%d", r.Cost.NsPerOp()), fmt.Sprintf("%d", r.Cost.AllocsPerOp()))
	} else {
		c = append(c, na, na)
	}
	c = append(c, instr(r.CostInstr, 0), kib(r.CostHotLines))
	if r.Loopback != nil {
		us := fmt.Sprintf("%.1f", float64(r.Loopback.NsPerOp())/1e3)
		if plain != nil && plain != r && plain.Loopback != nil && plain.Loopback.NsPerOp() > 0 {
			us += fmt.Sprintf(" (%+.0f%%)", 100*(float64(r.Loopback.NsPerOp())/float64(plain.Loopback.NsPerOp())-1))
		}
		c = append(c, us, fmt.Sprintf("%d", r.Loopback.AllocsPerOp()))
	} else {
		c = append(c, na, na)
	}
	var plainLoop float64
	if plain != nil && plain != r {
		plainLoop = plain.LoopbackInstr
	}
	c = append(c, instr(r.LoopbackInstr, plainLoop))
	if ab := r.Interleaved; ab.Calls > 0 {
		c = append(c, fmt.Sprintf("%+.1f%%", 100*(ab.Ratio()-1)))
	} else {
		c = append(c, na)
	}
	if r.MicroOnly {
		for range 10 {
			c = append(c, na)
		}
		return c
	}
	c = append(c,
		fmt.Sprintf("%.2f", float64(r.Outage.Attempts)/float64(max(1, r.Outage.Calls))),
		pct(r.Transient.OK, r.Transient.Calls)+opens(r.Transient.Opens),
		pct(r.Lost.OK, r.Lost.Calls)+opens(r.Lost.Opens),
		fmt.Sprintf("%d", r.Lost.Duplicates),
		ms(r.Tail.P99),
	)
	if r.TailHedge.Hedged {
		c = append(c, ms(r.TailHedge.P99))
	} else {
		c = append(c, na)
	}
	o := r.Overload
	good := fmt.Sprintf("%.0f", o.Goodput())
	if plain != nil && plain != r && plain.Overload.Goodput() > 0 {
		good += fmt.Sprintf(" (%.0f%%)", 100*o.Goodput()/plain.Overload.Goodput())
	}
	c = append(c, good,
		fmt.Sprintf("%.0f (%.2fx)", o.AttemptRate(), o.Amplification()),
		pct(o.OK, o.Offered))
	if o.Opens >= 0 && r.Outage.Opens >= 0 {
		c = append(c, fmt.Sprintf("%d", o.Opens))
	} else {
		c = append(c, na)
	}
	return c
}

// opens notes breaker opens in a scenario where a breaker should not
// open.
func opens(n int64) string {
	switch {
	case n == 1:
		return " (breaker opened once)"
	case n > 1:
		return fmt.Sprintf(" (breaker opened %d times)", n)
	}
	return ""
}

// instr formats an instruction count, with its difference from ref when
// both are known.
func instr(n, ref float64) string {
	if n == 0 {
		return na
	}
	s := fmt.Sprintf("%.0f", n)
	if ref > 0 {
		s += fmt.Sprintf(" (%+.1f%%)", 100*(n/ref-1))
	}
	return s
}

// kib formats hot code lines in KiB.
func kib(lines int) string {
	if lines == 0 {
		return na
	}
	return fmt.Sprintf("%.1f", Count{HotLines: lines}.HotKiB())
}

func pct(ok, n int) string {
	if n == 0 {
		return na
	}
	return fmt.Sprintf("%.1f%%", 100*float64(ok)/float64(n))
}

func ms(d time.Duration) string {
	if d == 0 {
		return na
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
