package harness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// Row is everything measured for one chain.
type Row struct {
	Name      string
	Pending   bool
	MicroOnly bool // a reference row: Go benchmarks only
	// Err is why the chain could not be built; nothing was measured.
	Err error
	// Failed holds the measurements that failed twice, by the column (or
	// failure mode) they fill, with the reason; the rest of the row
	// stands.
	Failed map[string]error

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

	Tail      TailResult
	TailHedge TailResult
	// Modes holds the outcome of each failure mode (see Modes) by name.
	Modes map[string]Outcome
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
	// Modes, when set, keeps the failure modes whose name contains it;
	// "none" keeps none.
	Modes string
	// SkipTail leaves out the slow-tail scenario.
	SkipTail bool
}

// Run measures every chain in one process, one chain at a time, against
// servers started for each scenario. A measurement that fails is tried
// once more; if it fails again, only its cells are marked failed.
func Run(ctx context.Context, cfg Config, o RunOptions) []Row {
	var specs []Spec
	for _, spec := range Specs() {
		if o.Only != "" && !strings.HasPrefix(spec.Name, "plain client") && !strings.Contains(spec.Name, o.Only) {
			continue
		}
		specs = append(specs, spec)
	}
	rows := make([]Row, len(specs))
	live := func(i int) bool { return ctx.Err() == nil && !rows[i].Pending && rows[i].Err == nil }
	for i, spec := range specs {
		rows[i] = Row{Name: spec.Name, MicroOnly: spec.MicroOnly}
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
				if live(i) {
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
				if ref == nil || !live(i) || rows[i].Failed[colInterleaved] != nil {
					continue
				}
				o.step(spec.Name, fmt.Sprintf("loopback calls interleaved with the plain client's, pass %d", pass+1))
				res, err := twice(ctx, func() (ABResult, error) {
					return Interleaved(*ref, spec, cfg.Params, Loopback, o.Interleaved)
				})
				if !rows[i].fail(colInterleaved, err) {
					passes[i] = append(passes[i], res)
				}
			}
		}
		for i, rs := range passes {
			if len(rs) > 0 && rows[i].Failed[colInterleaved] == nil {
				rows[i].Interleaved = MedianPass(rs)
			}
		}
	}
	if o.Instructions != nil {
		for i, spec := range specs {
			for _, m := range []Micro{Interceptors, Loopback} {
				if !live(i) || !m.Applies(spec) {
					continue
				}
				o.step(spec.Name, fmt.Sprintf("instructions per call, %s", m))
				n, err := twice(ctx, func() (Count, error) { return o.Instructions(ctx, spec.Name, m) })
				switch {
				case m == Interceptors && !rows[i].fail(colCostInstr, err):
					rows[i].CostInstr, rows[i].CostHotLines = n.Instructions, n.HotLines
				case m == Loopback && !rows[i].fail(colLoopbackInstr, err):
					rows[i].LoopbackInstr = n.Instructions
				}
			}
		}
	}
	for i, spec := range specs {
		if live(i) && !spec.MicroOnly && !o.SkipTail {
			rows[i].tail(ctx, spec, cfg, o)
		}
	}
	for _, m := range Modes() {
		if o.Modes != "" && !strings.Contains(m.Name, o.Modes) {
			continue
		}
		p := cfg
		p.Params.Failsoft = m.Setup
		rounds := 1
		if m.Rounds != nil {
			rounds = m.Rounds(cfg)
		}
		for n := range rounds {
			for i, spec := range specs {
				if !live(i) || spec.MicroOnly || (m.FailsoftOnly && spec.Name != Failsoft) || rows[i].Failed[m.Name] != nil {
					continue
				}
				what := m.Name
				if rounds > 1 {
					what += fmt.Sprintf(", round %d", n+1)
				}
				o.step(spec.Name, what)
				res, err := twice(ctx, func() (Outcome, error) { return m.run(ctx, spec, p, n) })
				if rows[i].fail(m.Name, err) {
					delete(rows[i].Modes, m.Name)
					continue
				}
				if rows[i].Modes == nil {
					rows[i].Modes = map[string]Outcome{}
				}
				if acc, ok := rows[i].Modes[m.Name]; ok {
					acc.add(res)
					res = acc
				}
				rows[i].Modes[m.Name] = res
			}
		}
	}
	return rows
}

// twice runs a measurement, and once more if it fails (unless ctx ended):
// some, such as a callgrind run, fail now and then for reasons of their
// own.
func twice[T any](ctx context.Context, measure func() (T, error)) (T, error) {
	v, err := measure()
	if err != nil && ctx.Err() == nil {
		v, err = measure()
	}
	return v, err
}

func (o RunOptions) step(chain, what string) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s: %s\n", chain, what)
	}
}

// fail records err, when there is one, as the failure of the measurement
// that fills cell, and reports whether there was one.
func (r *Row) fail(cell string, err error) bool { return markFailed(&r.Failed, cell, err) }

// markFailed records err, when there is one and cell has none yet, in
// *failed, and reports whether there was one.
func markFailed(failed *map[string]error, cell string, err error) bool {
	if err == nil {
		return false
	}
	if *failed == nil {
		*failed = map[string]error{}
	}
	if (*failed)[cell] == nil {
		(*failed)[cell] = err
	}
	return true
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
	if f, err := Bench(spec, p, Interceptors); !r.fail(colCost, err) && f != nil {
		r.Cost = faster(r.Cost, f)
	}
	if f, err := Bench(spec, p, Loopback); !r.fail(colLoopback, err) && f != nil {
		r.Loopback = faster(r.Loopback, f)
	}
}

func (r *Row) tail(ctx context.Context, spec Spec, cfg Config, o RunOptions) {
	o.step(spec.Name, "slow tail")
	res, err := twice(ctx, func() (TailResult, error) { return runTail(ctx, spec, cfg, false) })
	if !r.fail(colTail, err) {
		r.Tail = res
	}
	res, err = twice(ctx, func() (TailResult, error) { return runTail(ctx, spec, cfg, true) })
	if !r.fail(colTailHedged, err) {
		r.TailHedge = res
	}
}

// The cost table's columns, which also name the measurements that fill
// them in Row.Failed.
const (
	colCost          = "interceptors ns/op"
	colCostAllocs    = "allocs/op"
	colCostInstr     = "instructions/op"
	colHot           = "hot code KiB/op"
	colLoopback      = "loopback call µs"
	colLoopAllocs    = "allocs/call"
	colLoopbackInstr = "instructions/call"
	colInterleaved   = "interleaved with " + PlainDeadline
	colTail          = "slow tail: p99"
	colTailHedged    = "p99 hedged"
)

// cellOf says which measurement fills a column, when another one's does.
var cellOf = map[string]string{colCostAllocs: colCost, colHot: colCostInstr, colLoopAllocs: colLoopback}

// Markdown writes the cost table (and the slow tail), the table of
// failure modes (see ModesMarkdown), the settings they were measured with
// and failsoft's cost goals.
func Markdown(w io.Writer, rows []Row, cfg Config, rounds int) {
	var plain *Row
	for i := range rows {
		if rows[i].Name == "plain client" {
			plain = &rows[i]
		}
	}
	cols := []string{"chain", colCost, colCostAllocs, colCostInstr, colHot, colLoopback, colLoopAllocs, colLoopbackInstr,
		colInterleaved, fmt.Sprintf("%.0f%% %s", cfg.SlowRate*100, colTail), colTailHedged}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(cols)))
	for _, r := range rows {
		cells := []string{r.Name}
		switch {
		case r.Pending:
			for range len(cols) - 1 {
				cells = append(cells, "pending")
			}
		case r.Err != nil:
			cells = append(cells, "error: "+r.Err.Error())
			for range len(cols) - 2 {
				cells = append(cells, "")
			}
		default:
			cells = append(cells, r.cells(plain)...)
			keys := []string{colCost, colCostAllocs, colCostInstr, colHot, colLoopback, colLoopAllocs, colLoopbackInstr,
				colInterleaved, colTail, colTailHedged}
			for j, k := range keys {
				if err := r.Failed[cmp.Or(cellOf[k], k)]; err != nil {
					cells[j+1] = failedCell(err)
				}
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	p := cfg.Params
	fmt.Fprintf(w, "\nCost and slow tail: %d attempts per call, backoff %v doubling to %v, retried codes UNAVAILABLE and RESOURCE_EXHAUSTED, "+
		"call deadline %v; the peers' breakers open after %d consecutive failures and probe after %v (failsoft's breaker keeps its "+
		"default trip rule, opens for %v and doubles that while probes fail); hedging sends a second attempt after %v. "+
		"Interceptor cost: ClientConn.Invoke on a connection built with the chain's dial options, whose innermost interceptor "+
		"answers without sending; the plain client's figure is the floor every chain pays. A loopback call is one unary call to a "+
		"server on 127.0.0.1 in the same process (allocations count both sides); the Go benchmarks run in %d interleaved rounds and "+
		"each chain keeps its fastest. Slow tail: %d calls on %d workers, %.0f%% of attempts take %v.\n",
		p.Attempts, p.Backoff, p.MaxBackoff, p.Timeout, p.BreakerFailures, p.BreakerDelay, p.BreakerDelay, p.HedgeDelay, max(1, rounds),
		cfg.TailCalls, cfg.Workers, cfg.SlowRate*100, cfg.Slow)
	failures(w, rows)
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
	ModesMarkdown(w, rows, cfg)
}

// failures lists why each failed measurement failed, and chains that
// could not be built.
func failures(w io.Writer, rows []Row) {
	for _, r := range rows {
		if r.Err != nil && !r.Pending {
			fmt.Fprintf(w, "\n%s: %v\n", r.Name, r.Err)
		}
		for _, k := range slices.Sorted(maps.Keys(r.Failed)) {
			fmt.Fprintf(w, "\n%s, %s: failed twice: %v\n", r.Name, k, r.Failed[k])
		}
	}
}

// failedCell is the cell of a measurement that failed twice: the first
// line of the reason, cut short (failures lists it whole).
func failedCell(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	msg = strings.ReplaceAll(msg, "|", "/")
	if r := []rune(msg); len(r) > 60 {
		msg = string(r[:60]) + "…"
	}
	return "failed: " + msg
}

// ModesMarkdown writes the failure modes as one table: a row per figure,
// a column per chain, and failsoft's goal and whether the run met it;
// then the settings and a count of the goals met.
func ModesMarkdown(w io.Writer, rows []Row, cfg Config) {
	var chains []*Row
	for i := range rows {
		if !rows[i].MicroOnly && !rows[i].Pending && rows[i].Err == nil {
			chains = append(chains, &rows[i])
		}
	}
	if len(chains) == 0 {
		return
	}
	cols := []string{"failure mode", "figure"}
	for _, r := range chains {
		cols = append(cols, r.Name)
	}
	cols = append(cols, "failsoft's goal", "met")
	var b strings.Builder
	fmt.Fprintf(&b, "| %s |\n", strings.Join(cols, " | "))
	fmt.Fprintf(&b, "|%s\n", strings.Repeat(" --- |", len(cols)))
	measured := false
	for _, m := range Modes() {
		ran := false
		for _, r := range chains {
			_, ok := r.Modes[m.Name]
			ran = ran || ok || r.Failed[m.Name] != nil
		}
		if !ran {
			continue
		}
		ref := refs(rows, m.Name)
		for fi, f := range m.Figures {
			title := ""
			if fi == 0 {
				title = modeTitle(m, cfg)
			}
			cells := []string{title, f.Name}
			for _, r := range chains {
				o, ok := r.Modes[m.Name]
				switch {
				case r.Failed[m.Name] != nil:
					cells = append(cells, failedCell(r.Failed[m.Name]))
				case !ok:
					cells = append(cells, na)
				default:
					measured = true
					cells = append(cells, f.Cell(o, ref))
				}
			}
			verdict := na
			o, ok := Outcome{}, false
			for _, r := range chains {
				if r.Name == Failsoft {
					o, ok = r.Modes[m.Name]
				}
			}
			if f.Met != nil && ok {
				if met, done := f.Met(o, ref); done {
					verdict = yesNo(met)
				}
			}
			goal := cmp.Or(f.Goal, na)
			if f.Met != nil && ref.Best >= 0 && strings.Contains(f.Goal, "best retrying peer") {
				goal += fmt.Sprintf(" (%s: %s)", ref.BestName, pctf(ref.Best))
			}
			cells = append(cells, goal, verdict)
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	if !measured {
		return
	}
	fmt.Fprintf(w, "\nFailure modes (issue #18), every chain against the same seeded faults; failsoft with its %s unless the mode says otherwise:\n\n", LibraryDefaults)
	io.WriteString(w, b.String())
	p := cfg.Params
	fmt.Fprintf(w, "\nThe peers keep the settings above (%d attempts, backoff %v doubling to %v, UNAVAILABLE and RESOURCE_EXHAUSTED retried, "+
		"call deadline %v, breakers opening after %d consecutive failures for %v). failsoft gets the README's Charge policy "+
		"(requires_idempotency_key only) for the charge method and nothing else in code: its retries, budget, throttle and breaker "+
		"keep their defaults; the reads are IDEMPOTENT by their proto's idempotency_level. Closed-loop modes run %d callers; "+
		"open-loop modes offer Poisson arrivals. Seed %d.\n",
		p.Attempts, p.Backoff, p.MaxBackoff, p.Timeout, p.BreakerFailures, p.BreakerDelay, cfg.Workers, cfg.Seed)
	if gs := ModeGoals(rows); len(gs) > 0 {
		met := 0
		for _, g := range gs {
			if g.Met {
				met++
			}
		}
		fmt.Fprintf(w, "\nfailsoft met %d of the %d goals of issue #18 that this run measured.\n", met, len(gs))
	}
}

// modeTitle describes a mode with the sizes it ran with.
func modeTitle(m Mode, cfg Config) string {
	switch m.Name {
	case ModeTransient:
		return fmt.Sprintf("%s%% of attempts fail UNAVAILABLE at random (%d calls)", fmt.Sprint(100*cfg.TransientRate), cfg.TransientCalls)
	case ModeBadFailing:
		return fmt.Sprintf("1 of 3 round_robin backends fails every call UNAVAILABLE (%d calls)", cfg.BadBackendCalls)
	case ModeBadLate:
		return fmt.Sprintf("1 of 3 round_robin backends answers %v late (%d calls)", cfg.Late, cfg.BadBackendCalls)
	case ModeLost:
		return fmt.Sprintf("%s%% of charge responses lost after the charge committed (%d calls; failsoft: the README's Charge policy)",
			fmt.Sprint(100*cfg.LostRate), cfg.LostCalls)
	case ModeOutage, ModeOutageOff:
		t := fmt.Sprintf("%v outage, then healthy for %v (%.0f calls/s)", cfg.OutageDown, cfg.OutageAfter, cfg.OutageRate)
		if m.FailsoftOnly {
			t += "; failsoft without its breaker (failsoft.WithoutBreaker), the peers as above"
		}
		return t
	case ModeFleetOverload:
		return fmt.Sprintf("%.1fx overload of each of %d round_robin servers taking %d calls at once, %v each, the excess rejected at once as plain UNAVAILABLE (%v in %d rounds)",
			cfg.Load, FleetSize, cfg.Capacity, cfg.Service, cfg.OverloadDuration, max(1, cfg.OverloadRounds))
	case ModeFlaky:
		return fmt.Sprintf("%s%% of attempts fail UNAVAILABLE, %d calls at %.0f calls/s (failsoft: the README's breaker.FailuresWithin(5, 30s))",
			fmt.Sprint(100*cfg.FlakyRate), cfg.FlakyCalls, cfg.FlakyCallRate)
	}
	for _, r := range []Reject{RejectExhausted, RejectPushback, RejectUnavailable} {
		if m.Name == ModeOverload(r) {
			how := r.String()
			if r == RejectPushback {
				how = fmt.Sprintf("UNAVAILABLE with pushback (grpc-retry-pushback-ms: %d)", cfg.Pushback.Milliseconds())
			}
			return fmt.Sprintf("%.1fx overload of a server taking %d calls at once, %v each, the excess rejected at once as %s (%v in %d rounds)",
				cfg.Load, cfg.Capacity, cfg.Service, how, cfg.OverloadDuration, max(1, cfg.OverloadRounds))
		}
	}
	return m.Name
}

func yesNo(met bool) string {
	if met {
		return "yes"
	}
	return "**no**"
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
	goalLoopbackOver = 0.03
	// goalInstrRatio is the ceiling on instructions per call over a no-op
	// invoker, as a share of failsafe-go's chain in the same run.
	goalInstrRatio = 0.6
)

// Goals checks the row of chain (GoalsChain or failsoft's) against
// failsoft's cost goals, the project's ceiling, all of them within one run
// rather than in nanoseconds: at most 6 allocations per call over a no-op
// invoker, less time than failsafe-go's chain and at most 0.6x its
// instructions, a loopback call within 3% of a plain call with the same
// deadline; and the whole
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
				fmt.Sprintf("%d", c.AllocsPerOp()), c.AllocsPerOp() <= goalAllocs})
		if fg := by["failsafe-go retry + breaker + timeout"]; fg != nil && fg.Cost != nil && fg.Cost.NsPerOp() > 0 {
			m := fmt.Sprintf("%.2fx its time (%d ns to %d ns", float64(c.NsPerOp())/float64(fg.Cost.NsPerOp()), c.NsPerOp(), fg.Cost.NsPerOp()) +
				plainDeadlineCost(by[PlainDeadline]) + ")"
			met := c.NsPerOp() < fg.Cost.NsPerOp()
			if fs.CostInstr > 0 && fg.CostInstr > 0 {
				m += fmt.Sprintf(", %.2fx its instructions", fs.CostInstr/fg.CostInstr)
				met = met && fs.CostInstr <= goalInstrRatio*fg.CostInstr
			}
			gs = append(gs, Goal{"less time than failsafe-go's chain and at most 0.6x its instructions over a no-op invoker", m, met})
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
	if lost, ok := whole.lost(); ok {
		var peers []string
		peerDup := false
		for _, r := range rows {
			o, ok := r.lost()
			if r.Name == Failsoft || r.Name == "plain client" || !ok {
				continue
			}
			peers = append(peers, fmt.Sprintf("%d", o.Duplicates))
			peerDup = peerDup || o.Duplicates > 0
		}
		m := fmt.Sprintf("%d", lost.Duplicates)
		if whole != fs {
			m += " for the whole suite"
		}
		if len(peers) > 0 {
			m += " (the peers: " + strings.Join(peers, ", ") + ")"
		}
		if !peerDup {
			m += "; no peer made one, so this run does not test it"
		}
		gs = append(gs, Goal{"no duplicate charge with lost responses where the peers make some", m, lost.Duplicates == 0 && peerDup})
	}
	return gs
}

// lost is the chain's outcome of the lost-after-commit mode, if measured.
func (r *Row) lost() (Outcome, bool) {
	if r == nil {
		return Outcome{}, false
	}
	o, ok := r.Modes[ModeLost]
	return o, ok && o.Calls > 0
}

// plainDeadlineCost names the floor a call with its own deadline sets in
// the same run, which every chain's time includes.
func plainDeadlineCost(r *Row) string {
	if r == nil || r.Cost == nil {
		return ""
	}
	return fmt.Sprintf("; a plain call that sets its own deadline: %d ns", r.Cost.NsPerOp())
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
		return append(c, na, na)
	}
	c = append(c, ms(r.Tail.P99))
	if r.TailHedge.Hedged {
		c = append(c, ms(r.TailHedge.P99))
	} else {
		c = append(c, na)
	}
	return c
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
