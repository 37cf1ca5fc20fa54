package logging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/failsoft/failsoft/interceptors/observe"
)

// Wants and level list the kinds' levels apart: every event that level
// would write at a logger's level must be wanted by Wants, or layers skip
// building it and it is never written. The loop covers every kind, so a
// kind added to level but not to Wants fails here.
func TestWantsCoversEveryLoggedEvent(t *testing.T) {
	var events []observe.Event
	for k := observe.AttemptStart; k <= observe.PolicyUnmatched; k++ {
		for _, reason := range []string{"", "attempts", "deadline", "budget", "code", "pushback"} {
			for _, to := range []string{"", "open", "half-open", "closed"} {
				for _, attempt := range []int{1, 3, 5} {
					for _, err := range []error{nil, errors.New("down")} {
						events = append(events, observe.Event{Kind: k, Reason: reason, To: to, Attempt: attempt, Err: err})
					}
				}
			}
		}
	}
	for _, at := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		for _, many := range []int{0, 3} {
			o, err := New(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: at})), WithManyAttempts(many))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events {
				lvl, _ := o.level(&e)
				if lvl >= at && !o.Wants(context.Background(), e.Kind) {
					t.Errorf("logger at %v, many attempts %d: %v would be written at %v, but Wants(%v) is false", at, many, e, lvl, e.Kind)
				}
			}
		}
	}
}
