package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	demochaos "github.com/failsoft/failsoft/demo/internal/chaos"
	"github.com/failsoft/failsoft/demo/internal/checkout"
	"github.com/failsoft/failsoft/interceptors/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	post := func(ctx context.Context, url string, cfg chaos.Config) error {
		return demochaos.PostTo(ctx, url, os.Getenv("FAILSOFT_CHAOS_SECRET"), &cfg)
	}
	if err := run(ctx, os.Args[1:], os.Stdout, post, sleep); err != nil {
		fmt.Fprintln(os.Stderr, "gameday:", err)
		os.Exit(1)
	}
}

// poster sends a config to the control endpoint at url.
type poster func(ctx context.Context, url string, cfg chaos.Config) error

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// phaseConfig is the control request of one phase: its faults on the
// methods match selects, or injection off for a phase without faults.
func phaseConfig(match string, p checkout.Phase) chaos.Config {
	return chaos.Config{Enabled: true, Rules: []chaos.Rule{{Match: match, Faults: p.Chaos}}}
}

func run(ctx context.Context, args []string, out io.Writer, post poster, wait func(context.Context, time.Duration) error) error {
	fs := flag.NewFlagSet("gameday", flag.ContinueOnError)
	control := fs.String("control", "", "URL of the service's chaos control endpoint, such as http://127.0.0.1:9090/chaos")
	match := fs.String("match", "*", `the methods to inject faults into: "*", "/pkg.Service/*" or "/pkg.Service/Method"`)
	duration := fs.Duration("duration", 2*time.Minute, "length of the whole game day, split 20/30/20/30% over the phases")
	dryRun := fs.Bool("dry-run", false, "print each phase's rules instead of sending them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *control == "" && !*dryRun {
		return errors.New("-control is required (or -dry-run)")
	}
	if *duration <= 0 {
		return fmt.Errorf("-duration %v is not positive", *duration)
	}
	phases := checkout.StoryPhases(*duration)
	for _, p := range phases {
		cfg := phaseConfig(*match, p)
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("phase %s: %w", p.Name, err)
		}
	}
	if *dryRun {
		enc := json.NewEncoder(out)
		for _, p := range phases {
			fmt.Fprintf(out, "# %s for %v: %s\n", p.Name, p.Duration, p.Note)
			if err := enc.Encode(phaseConfig(*match, p)); err != nil {
				return err
			}
		}
		return nil
	}
	err := play(ctx, *control, *match, phases, out, post, wait)
	// Whatever happened, the service is left without injected faults.
	offCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if offErr := post(offCtx, *control, chaos.Config{}); offErr != nil {
		return errors.Join(err, fmt.Errorf("switching injection off: %w", offErr))
	}
	fmt.Fprintln(out, "--- injection off")
	return err
}

func play(ctx context.Context, control, match string, phases []checkout.Phase, out io.Writer, post poster, wait func(context.Context, time.Duration) error) error {
	for _, p := range phases {
		cfg := phaseConfig(match, p)
		if err := post(ctx, control, cfg); err != nil {
			return fmt.Errorf("phase %s: %w", p.Name, err)
		}
		fmt.Fprintf(out, "--- phase %s (%v): %s — %s\n", p.Name, p.Duration, cfg, p.Note)
		if err := wait(ctx, p.Duration); err != nil {
			return err
		}
	}
	return nil
}
