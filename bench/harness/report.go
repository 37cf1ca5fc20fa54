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
	Name    string
	Pending bool
	Err     error

	Cost     *testing.BenchmarkResult // nil: not applicable or not run
	Loopback *testing.BenchmarkResult

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
	// Only, when set, keeps the chains whose name contains it (and the
	// plain client, the reference of the overload goodput).
	Only string
	// Progress, when set, hears one line per step.
	Progress io.Writer
}

// Run measures every chain in one process, one chain at a time, against
// servers started for each scenario.
func Run(ctx context.Context, cfg Config, o RunOptions) []Row {
	var rows []Row
	for _, spec := range Specs() {
		if o.Only != "" && spec.Name != "plain client" && !strings.Contains(spec.Name, o.Only) {
			continue
		}
		rows = append(rows, runSpec(ctx, spec, cfg, o))
	}
	return rows
}

func runSpec(ctx context.Context, spec Spec, cfg Config, o RunOptions) Row {
	r := Row{Name: spec.Name}
	step := func(what string) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%s: %s\n", spec.Name, what)
		}
	}
	if _, err := spec.Build(cfg.Params); err != nil {
		if errors.Is(err, ErrPending) {
			r.Pending = true
		} else {
			r.Err = err
		}
		step(err.Error())
		return r
	}
	fail := func(err error) bool {
		if err != nil && r.Err == nil {
			r.Err = err
		}
		return err != nil
	}
	if o.Micro {
		step("interceptor cost")
		if f, err := InterceptorBench(spec, cfg.Params); !fail(err) && f != nil {
			res := testing.Benchmark(f)
			r.Cost = &res
		}
		step("loopback call")
		if f, err := LoopbackBench(spec, cfg.Params); !fail(err) {
			res := testing.Benchmark(f)
			r.Loopback = &res
		}
	}
	var err error
	step("total outage")
	r.Outage, err = runOutage(ctx, spec, cfg)
	fail(err)
	step("transient failures")
	r.Transient, err = runTransient(ctx, spec, cfg)
	fail(err)
	step("lost responses")
	r.Lost, err = runLost(ctx, spec, cfg)
	fail(err)
	step("slow tail")
	r.Tail, err = runTail(ctx, spec, cfg, false)
	fail(err)
	r.TailHedge, err = runTail(ctx, spec, cfg, true)
	fail(err)
	step("overload")
	r.Overload, err = runOverload(ctx, spec, cfg)
	fail(err)
	return r
}

// Markdown writes the rows as one markdown table, followed by the settings
// it was measured with.
func Markdown(w io.Writer, rows []Row, cfg Config) {
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
		"loopback call µs",
		"allocs/call",
		"outage: attempts per call",
		fmt.Sprintf("%.0f%% transient: success", cfg.TransientRate*100),
		fmt.Sprintf("%.0f%% lost responses: success", cfg.LostRate*100),
		"duplicate charges",
		fmt.Sprintf("%.0f%% slow tail: p99", cfg.SlowRate*100),
		"p99 hedged",
		"overload: goodput/s",
		"attempts at server/s",
		"success",
		"breaker opens",
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
		"call deadline %v; breakers open after %d consecutive failures and probe after %v; hedging sends a second attempt after %v. "+
		"Interceptor cost is over a no-op invoker; a loopback call is one unary call to a server on 127.0.0.1 in the same process "+
		"(allocations count both sides). Closed-loop scenarios: %d workers; outage %d calls, transient %d, lost responses %d, "+
		"slow tail %d (%.0f%% of attempts take %v). Overload: a server that works on %d calls at once, %v each (%.0f calls/s), "+
		"rejecting the excess at once with RESOURCE_EXHAUSTED, offered %.1fx its capacity (%.0f calls/s, Poisson arrivals) for %v; "+
		"goodput in brackets is relative to the plain client, attempts in brackets per logical call offered. "+
		"Faults are a function of seed %d and the call, so every chain meets the same ones.\n",
		p.Attempts, p.Backoff, p.MaxBackoff, p.Timeout, p.BreakerFailures, p.BreakerDelay, p.HedgeDelay,
		cfg.Workers, cfg.OutageCalls, cfg.TransientCalls, cfg.LostCalls, cfg.TailCalls, cfg.SlowRate*100, cfg.Slow,
		cfg.Capacity, cfg.Service, float64(cfg.Capacity)/cfg.Service.Seconds(), cfg.Load,
		cfg.Load*float64(cfg.Capacity)/cfg.Service.Seconds(), cfg.OverloadDuration, cfg.Seed)
	for _, r := range rows {
		if r.Err != nil && !r.Pending {
			fmt.Fprintf(w, "\n%s: %v\n", r.Name, r.Err)
		}
	}
}

const na = "–"

func (r *Row) cells(plain *Row) []string {
	var c []string
	if r.Cost != nil {
		c = append(c, fmt.Sprintf("%d", r.Cost.NsPerOp()), fmt.Sprintf("%d", r.Cost.AllocsPerOp()))
	} else {
		c = append(c, na, na)
	}
	if r.Loopback != nil {
		us := fmt.Sprintf("%.1f", float64(r.Loopback.NsPerOp())/1e3)
		if plain != nil && plain != r && plain.Loopback != nil && plain.Loopback.NsPerOp() > 0 {
			us += fmt.Sprintf(" (%+.0f%%)", 100*(float64(r.Loopback.NsPerOp())/float64(plain.Loopback.NsPerOp())-1))
		}
		c = append(c, us, fmt.Sprintf("%d", r.Loopback.AllocsPerOp()))
	} else {
		c = append(c, na, na)
	}
	c = append(c,
		fmt.Sprintf("%.2f", float64(r.Outage.Attempts)/float64(max(1, r.Outage.Calls))),
		pct(r.Transient.OK, r.Transient.Calls),
		pct(r.Lost.OK, r.Lost.Calls),
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
