package observe_test

import (
	"context"
	"fmt"

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
