package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
)

func TestWindowsStayBounded(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	o, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), WithRateLimit(1, time.Second), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 * maxWindows {
		if i%maxWindows == 0 {
			clk.Advance(time.Second)
		}
		o.Observe(context.Background(), observe.Event{Kind: observe.BreakerRejected, Target: fmt.Sprint(i)})
	}
	if n := len(o.windows); n == 0 || n > maxWindows {
		t.Fatalf("%d windows kept for %d targets, want at most %d", n, 10*maxWindows, maxWindows)
	}
}
