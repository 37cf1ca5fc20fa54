package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"testing"
	"time"

	"github.com/failsoft/failsoft/bench/harness"
)

func main() {
	testing.Init()
	cfg := harness.DefaultConfig()
	var (
		micro     = flag.Bool("micro", true, "run the Go benchmarks (interceptor cost, loopback call)")
		benchtime = flag.Duration("benchtime", 300*time.Millisecond, "time per Go benchmark and round")
		rounds    = flag.Int("rounds", 3, "rounds of Go benchmarks; each chain keeps its fastest")
		scale     = flag.Float64("scale", 1, "multiply every scenario's calls and duration")
		only      = flag.String("only", "", "measure only the chains whose name contains this (and the plain client)")
		quiet     = flag.Bool("quiet", false, "no progress on stderr")
		instr     = flag.Bool("instructions", harness.Valgrind() != "", "count instructions per call of the Go benchmarks with valgrind (default: when valgrind is installed)")
		calls     = flag.String("calls", "", "make -n calls of this Go benchmark (interceptors or loopback) of -chain, then exit: what -instructions measures")
		chain     = flag.String("chain", "", "with -calls: the chain")
		n         = flag.Int("n", 0, "with -calls: how many calls")
		ab        = flag.Int("interleaved", 10000, "loopback calls of each chain timed in alternation with the plain client that sets the same deadline, per pass (0: none)")
		passes    = flag.Int("passes", 3, "passes of -interleaved over every chain; each chain keeps its median pass")
		hot       = flag.String("hot", "", "print the code that a call of this chain runs over a no-op invoker, by function (needs valgrind), then exit")
	)
	flag.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrency of the closed-loop scenarios")
	flag.DurationVar(&cfg.OverloadDuration, "overload", cfg.OverloadDuration, "how long the overload scenario offers load")
	flag.IntVar(&cfg.OverloadRounds, "overload-rounds", cfg.OverloadRounds, "rounds the overload duration is split into, chains interleaved")
	flag.Float64Var(&cfg.Load, "load", cfg.Load, "offered load in the overload scenario, as a multiple of capacity")
	flag.IntVar(&cfg.Capacity, "capacity", cfg.Capacity, "calls the overloaded server works on at once")
	flag.DurationVar(&cfg.Service, "service", cfg.Service, "time the overloaded server spends on a call")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the faults and arrivals")
	mode := flag.String("mode", "", `run only the failure modes whose name contains this ("none": none of them)`)
	tail := flag.Bool("tail", true, "run the slow-tail scenario")
	pcfg := harness.DefaultPendingConfig()
	pend := flag.Bool("pending", true, "measure the pending stores (boltstore, redisstore) against raw bbolt and Redis")
	flag.StringVar(&pcfg.Dir, "pending-dir", pcfg.Dir, "directory of the boltstore files, on the disk to measure (default: the system's temporary directory)")
	flag.Parse()
	if *calls != "" {
		if err := harness.Calls(*chain, cfg.Params, harness.Micro(*calls), *n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *hot != "" {
		if err := printHot(*hot); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *scale <= 0 {
		fmt.Fprintln(os.Stderr, "-scale must be positive")
		os.Exit(2)
	}
	mul := func(n int) int { return max(1, int(float64(n)**scale)) }
	dur := func(d time.Duration) time.Duration { return time.Duration(float64(d) * *scale) }
	cfg.TransientCalls = mul(cfg.TransientCalls)
	cfg.BadBackendCalls = mul(cfg.BadBackendCalls)
	cfg.LostCalls = mul(cfg.LostCalls)
	cfg.TailCalls = mul(cfg.TailCalls)
	cfg.FlakyCalls = mul(cfg.FlakyCalls)
	cfg.OverloadDuration = dur(cfg.OverloadDuration)
	cfg.OutageDown, cfg.OutageAfter = dur(cfg.OutageDown), dur(cfg.OutageAfter)
	pcfg.Entries, pcfg.Budget = mul(pcfg.Entries), dur(pcfg.Budget)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := harness.RunOptions{Micro: *micro, Rounds: *rounds, Only: *only, Interleaved: *ab, InterleavedPasses: *passes,
		Modes: *mode, SkipTail: !*tail}
	if !*quiet {
		o.Progress = os.Stderr
	}
	if *instr {
		count, err := counter()
		if err != nil {
			fmt.Fprintln(os.Stderr, "-instructions:", err)
			os.Exit(2)
		}
		o.Instructions = count
	}
	rows := harness.Run(ctx, cfg, o)
	var stores []harness.StoreResult
	if *pend && ctx.Err() == nil {
		stores = harness.RunPending(ctx, pcfg, o.Progress)
	}
	harness.Markdown(os.Stdout, rows, cfg, *rounds)
	harness.PendingMarkdown(os.Stdout, stores, pcfg)
}

// counter returns what measures a chain's Go benchmark under valgrind:
// this program, run with -calls.
func counter() (func(ctx context.Context, chain string, m harness.Micro) (harness.Count, error), error) {
	valgrind, self := harness.Valgrind(), executable()
	if valgrind == "" || self == "" {
		return nil, errors.New("needs valgrind and this program's path")
	}
	return func(ctx context.Context, chain string, m harness.Micro) (harness.Count, error) {
		return harness.Instructions(ctx, valgrind, self, func(n int) []string {
			return []string{"-calls", string(m), "-chain", chain, "-n", fmt.Sprint(n)}
		}, m)
	}, nil
}

// printHot prints the hot code of a chain's calls over a no-op invoker,
// the functions with the most lines first.
func printHot(chain string) error {
	count, err := counter()
	if err != nil {
		return err
	}
	c, err := count(context.Background(), chain, harness.Interceptors)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %.0f instructions and %d lines of code (%.1f KiB) per call over a no-op invoker\n",
		chain, c.Instructions, c.HotLines, c.HotKiB())
	fns := slices.SortedFunc(maps.Keys(c.HotByFunction), func(a, b string) int {
		return cmp.Or(cmp.Compare(c.HotByFunction[b], c.HotByFunction[a]), cmp.Compare(a, b))
	})
	for _, fn := range fns {
		fmt.Printf("%5d  %s\n", c.HotByFunction[fn], fn)
	}
	return nil
}

func executable() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}
