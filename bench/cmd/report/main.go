package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
		ab        = flag.Int("interleaved", 10000, "loopback calls of each chain timed in alternation with the plain client that sets the same deadline (0: none)")
	)
	flag.IntVar(&cfg.Workers, "workers", cfg.Workers, "concurrency of the closed-loop scenarios")
	flag.DurationVar(&cfg.OverloadDuration, "overload", cfg.OverloadDuration, "how long the overload scenario offers load")
	flag.IntVar(&cfg.OverloadRounds, "overload-rounds", cfg.OverloadRounds, "rounds the overload duration is split into, chains interleaved")
	flag.Float64Var(&cfg.Load, "load", cfg.Load, "offered load in the overload scenario, as a multiple of capacity")
	flag.IntVar(&cfg.Capacity, "capacity", cfg.Capacity, "calls the overloaded server works on at once")
	flag.DurationVar(&cfg.Service, "service", cfg.Service, "time the overloaded server spends on a call")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the faults and arrivals")
	flag.Parse()
	if *calls != "" {
		if err := harness.Calls(*chain, cfg.Params, harness.Micro(*calls), *n); err != nil {
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
	cfg.OutageCalls = mul(cfg.OutageCalls)
	cfg.TransientCalls = mul(cfg.TransientCalls)
	cfg.LostCalls = mul(cfg.LostCalls)
	cfg.TailCalls = mul(cfg.TailCalls)
	cfg.OverloadDuration = time.Duration(float64(cfg.OverloadDuration) * *scale)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := harness.RunOptions{Micro: *micro, Rounds: *rounds, Only: *only, Interleaved: *ab}
	if !*quiet {
		o.Progress = os.Stderr
	}
	if *instr {
		valgrind, self := harness.Valgrind(), executable()
		if valgrind == "" || self == "" {
			fmt.Fprintln(os.Stderr, "-instructions needs valgrind and this program's path")
			os.Exit(2)
		}
		o.Instructions = func(ctx context.Context, chain string, m harness.Micro) (float64, error) {
			return harness.Instructions(ctx, valgrind, self, func(n int) []string {
				return []string{"-calls", string(m), "-chain", chain, "-n", fmt.Sprint(n)}
			}, m)
		}
	}
	rows := harness.Run(ctx, cfg, o)
	harness.Markdown(os.Stdout, rows, cfg, *rounds)
}

func executable() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}
