package checkout

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/demo/internal/chaos"
)

// Phase is a stretch of load under one set of chaos settings.
type Phase struct {
	Name     string
	Duration time.Duration
	Chaos    chaos.Config
	// Note says what to watch for.
	Note string
}

// StoryPhases splits total into the four phases of the story: healthy,
// flaky (errors, a slow tail, lost responses, pushback), outage, recovery.
func StoryPhases(total time.Duration) []Phase {
	part := func(f float64) time.Duration { return time.Duration(f * float64(total)) }
	return []Phase{
		{Name: "healthy", Duration: part(0.2), Note: "hedged reads cut the slow tail",
			Chaos: chaos.Config{Latency: 5 * time.Millisecond, SlowLatency: 300 * time.Millisecond, SlowFraction: 0.08}},
		{Name: "flaky", Duration: part(0.3), Note: "retries with the same key; lost responses replayed, not charged twice",
			Chaos: chaos.Config{
				ErrorRate: 0.03, ErrorCodes: []codes.Code{codes.Unavailable},
				Latency: 10 * time.Millisecond, SlowLatency: 900 * time.Millisecond, SlowFraction: 0.03,
				LostRate: 0.06, PushbackRate: 0.03, Pushback: 100 * time.Millisecond,
			}},
		{Name: "outage", Duration: part(0.2), Note: "breaker opens; charges answered pending and kept in the pending store",
			Chaos: chaos.Config{Down: true}},
		{Name: "recovery", Duration: part(0.3), Note: "breaker probes and closes; pending charges drain with the same keys",
			Chaos: chaos.Config{Latency: 5 * time.Millisecond}},
	}
}

// Load is the traffic to drive.
type Load struct {
	// Rate is logical operations started per second.
	Rate float64
	// Concurrency bounds operations in flight; a tick that finds them all
	// busy is skipped and counted.
	Concurrency int
	Phases      []Phase
	// Seed picks the operation mix.
	Seed uint64
	// SetChaos applies a phase's settings on the server.
	SetChaos func(context.Context, chaos.Config) error
	// Progress receives a status line every ProgressEvery (default a
	// second); nil for none. The client samples its state for the HTML
	// report at the same interval either way.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Validate checks the load settings.
func (l *Load) Validate() error {
	switch {
	case !(l.Rate > 0 && l.Rate <= 10000):
		return fmt.Errorf("load: rate %v must be in (0, 10000] per second", l.Rate)
	case l.Concurrency < 1 || l.Concurrency > 1000:
		return fmt.Errorf("load: concurrency %d must be in [1, 1000]", l.Concurrency)
	case len(l.Phases) == 0:
		return fmt.Errorf("load: no phases")
	}
	for _, p := range l.Phases {
		if p.Duration <= 0 {
			return fmt.Errorf("load: phase %s has duration %v, must be positive", p.Name, p.Duration)
		}
		if err := p.Chaos.Validate(); err != nil {
			return fmt.Errorf("load: phase %s: %w", p.Name, err)
		}
	}
	return nil
}

// Run drives the load, phase after phase, with pending charges drained in the
// background, and returns when every operation has finished.
func (c *Client) Run(ctx context.Context, l Load) error {
	if err := l.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	bg.Go(func() { c.RunDrainer(ctx) })
	defer bg.Wait()
	defer cancel()

	rnd := rand.New(rand.NewPCG(l.Seed, l.Seed+7))
	sem := make(chan struct{}, l.Concurrency)
	var ops sync.WaitGroup
	var skipped atomic.Int64
	phase := atomic.Pointer[string]{}
	phase.Store(&l.Phases[0].Name)
	start := time.Now()
	// Samples for the HTML report are taken with every progress line, also
	// when the lines are not printed.
	every := l.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	bg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.progress(l.Progress, *phase.Load(), time.Since(start), skipped.Load())
			}
		}
	})
	interval := time.Duration(float64(time.Second) / l.Rate)
	for _, p := range l.Phases {
		name := p.Name
		phase.Store(&name)
		c.stats.startPhase(name)
		if l.SetChaos != nil {
			if err := l.SetChaos(ctx, p.Chaos); err != nil {
				return err
			}
		}
		if l.Progress != nil {
			fmt.Fprintf(l.Progress, "--- phase %s (%v): %s — %s\n", p.Name, p.Duration, p.Chaos.String(), p.Note)
		}
		end := time.Now().Add(p.Duration)
		t := time.NewTicker(interval)
		for now := time.Now(); now.Before(end); now = time.Now() {
			select {
			case <-ctx.Done():
				t.Stop()
				ops.Wait()
				return ctx.Err()
			case <-t.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				skipped.Add(1)
				continue
			}
			pick, amount, n := rnd.IntN(100), int64(100+rnd.IntN(9900)), rnd.IntN(1<<30)
			ops.Go(func() {
				defer func() { <-sem }()
				c.op(ctx, pick, amount, n)
			})
		}
		t.Stop()
	}
	ops.Wait()
	c.stats.startPhase(AfterLoad)
	c.progress(l.Progress, AfterLoad, time.Since(start), skipped.Load())
	return nil
}

// op runs one operation of the mix: mostly checkouts, some reads (hedged),
// a few refunds and batch checkouts.
func (c *Client) op(ctx context.Context, pick int, amount int64, n int) {
	switch {
	case pick < 70:
		c.Checkout(ctx, c.NextOrder(), amount)
	case pick < 90:
		if id, ok := c.RandomSettled(n); ok {
			_, _, _ = c.Lookup(ctx, id)
		} else {
			c.Checkout(ctx, c.NextOrder(), amount)
		}
	case pick < 94:
		if id, ok := c.RandomSettled(n); ok {
			_ = c.Refund(ctx, id)
		}
	default:
		c.BatchCheckout(ctx, []int64{amount, amount/2 + 1, amount/3 + 1})
	}
}

// progress takes a sample and, when w is not nil, prints it as a line.
func (c *Client) progress(w io.Writer, phase string, elapsed time.Duration, skipped int64) {
	smp := c.Sample(elapsed, phase)
	if w == nil {
		return
	}
	if phase == AfterLoad {
		phase = "done"
	}
	s := c.stats.Snapshot()
	fmt.Fprintf(w, "[%-8s %5.1fs] calls %4d  settled %4d pending %3d declined %2d  attempts %4d retries %3d hedges %3d  breaker %-9s queued to resend %3d",
		phase, elapsed.Seconds(), s.LogicalCalls, s.Outcomes[StateSettled], s.Outcomes[StatePending], s.Outcomes[StateDeclined],
		s.Attempts, s.Retries, s.Hedges, smp.Breaker, smp.Queued)
	if skipped > 0 {
		fmt.Fprintf(w, "  skipped %d", skipped)
	}
	fmt.Fprintln(w)
}
