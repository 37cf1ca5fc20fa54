package observe_test

import (
	"context"
	"fmt"
	"time"

	"github.com/failsoft/failsoft/interceptors/observe"
)

// breakerLog hears breaker transitions only. Saying so through Wants
// spares the layers building the events it would ignore: the retry layer
// does not time attempts for it.
type breakerLog struct{}

func (breakerLog) Observe(_ context.Context, e observe.Event) {
	if e.Kind == observe.BreakerState {
		fmt.Printf("breaker for %s: %s -> %s\n", e.Target, e.From, e.To)
	}
}

func (breakerLog) Wants(_ context.Context, k observe.Kind) bool { return k == observe.BreakerState }

// An Observer hears every layer's decisions; give it to the suite with
// failsoft.WithObserver, or to a layer with its WithObserver option.
func Example() {
	var o observe.Observer = observe.Multi(breakerLog{}, nil)
	o.Observe(context.Background(), observe.Event{Kind: observe.BreakerState, Target: "payments:443", From: "closed", To: "open"})
	fmt.Println("attempt events wanted:", observe.Wants(context.Background(), o, observe.AttemptEnd))
	// Output:
	// breaker for payments:443: closed -> open
	// attempt events wanted: false
}

// attemptState is what a layer keeps about one attempt besides the
// Attempt: here, a note. Embedding AttemptContext makes it the attempt's
// context, so that the attempt costs one allocation.
type attemptState struct {
	observe.AttemptContext
	note string
}

// A layer that keeps more about an attempt embeds an AttemptContext;
// layers inside read the attempt from the context as usual.
func ExampleAttemptContext() {
	a := &attemptState{AttemptContext: observe.AttemptContext{
		Context: context.Background(),
		Attempt: observe.Attempt{N: 2, Backoff: 50 * time.Millisecond, BackoffReason: "policy"},
	}, note: "second try"}
	var ctx context.Context = a
	got := observe.AttemptFrom(ctx)
	fmt.Println(got.N, got.Backoff, got.BackoffReason, a.note)
	fmt.Println(observe.AttemptFrom(context.Background()).N)
	// Output:
	// 2 50ms policy second try
	// 1
}
