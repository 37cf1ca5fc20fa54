package grpcmw_test

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	mwlogging "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/otel/trace"

	"github.com/failsoft/failsoft/interceptors/logging/grpcmw"
	"github.com/failsoft/failsoft/interceptors/observe"
)

type line struct {
	level  mwlogging.Level
	msg    string
	fields []any
}

// recorder is a go-grpc-middleware Logger that keeps what it is given.
type recorder struct {
	mu    sync.Mutex
	lines []line
}

func (r *recorder) Log(_ context.Context, level mwlogging.Level, msg string, fields ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line{level, msg, fields})
}

func TestHandler(t *testing.T) {
	mwCtx := mwlogging.InjectFields(context.Background(), mwlogging.Fields{"request.id", "r-1"})
	for _, tc := range []struct {
		name  string
		level slog.Leveler
		ctx   context.Context
		log   func(*slog.Logger, context.Context)
		want  []line
	}{
		{
			name: "message, level and attributes",
			log: func(l *slog.Logger, ctx context.Context) {
				l.WarnContext(ctx, "breaker opened", "grpc.method", "/a.v1.S/M", slog.Int("attempt", 3))
			},
			want: []line{{mwlogging.LevelWarn, "breaker opened", []any{"grpc.method", "/a.v1.S/M", "attempt", int64(3)}}},
		},
		{
			name: "below the level: dropped",
			log:  func(l *slog.Logger, ctx context.Context) { l.DebugContext(ctx, "attempt") },
		},
		{
			name:  "a lower level lets debug through",
			level: slog.LevelDebug,
			log:   func(l *slog.Logger, ctx context.Context) { l.DebugContext(ctx, "attempt") },
			want:  []line{{mwlogging.LevelDebug, "attempt", []any{}}},
		},
		{
			name: "groups flattened, empty attributes and groups dropped, keyless groups inlined",
			log: func(l *slog.Logger, ctx context.Context) {
				l.With("svc", "pay").WithGroup("failsoft").With("layer", "retry").ErrorContext(ctx, "store failed",
					slog.Group("breaker", "from", "closed", "to", "open"), slog.Attr{}, slog.Group("empty"),
					slog.Group("", "inline", true))
			},
			want: []line{{mwlogging.LevelError, "store failed", []any{
				"svc", "pay", "failsoft.layer", "retry", "failsoft.breaker.from", "closed", "failsoft.breaker.to", "open", "failsoft.inline", true,
			}}},
		},
		{
			name: "the middleware's fields on the context come along",
			ctx:  mwCtx,
			log:  func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "breaker closed", "k", "v") },
			want: []line{{mwlogging.LevelInfo, "breaker closed", []any{"k", "v", "request.id", "r-1"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			tc.log(slog.New(grpcmw.NewHandler(rec, tc.level)), ctx)
			if len(rec.lines) != len(tc.want) {
				t.Fatalf("logged %+v, want %+v", rec.lines, tc.want)
			}
			for i := range tc.want {
				if !reflect.DeepEqual(rec.lines[i], tc.want[i]) {
					t.Errorf("line %d: %#v, want %#v", i, rec.lines[i], tc.want[i])
				}
			}
		})
	}
}

func TestNilLogger(t *testing.T) {
	if _, err := grpcmw.New(nil, nil); err == nil {
		t.Fatal("New(nil) = nil error")
	}
	if grpcmw.NewHandler(nil, nil).Enabled(context.Background(), slog.LevelError) {
		t.Fatal("a handler without a logger is enabled")
	}
}

// The observer on a middleware logger writes failsoft's decision with the
// call's trace ID, and skips what its level drops.
func TestObserverThroughMiddlewareLogger(t *testing.T) {
	rec := &recorder{}
	obs, err := grpcmw.New(rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	if obs.Wants(ctx, observe.AttemptStart) {
		t.Error("an info-level logger wants debug-level attempt events")
	}
	obs.Observe(ctx, observe.Event{Kind: observe.BreakerState, Method: "/a.v1.S/M", Target: "dns:///a", From: "closed", To: "open", Duration: time.Second})
	if len(rec.lines) != 1 {
		t.Fatalf("logged %+v, want one line", rec.lines)
	}
	l := rec.lines[0]
	got := map[string]any{}
	for i := 0; i+1 < len(l.fields); i += 2 {
		got[fmt.Sprint(l.fields[i])] = l.fields[i+1]
	}
	if l.level != mwlogging.LevelWarn || got["trace_id"] != tid.String() || got["grpc.method"] != "/a.v1.S/M" {
		t.Errorf("logged %v %q %v, want a warning with the trace ID and method", l.level, l.msg, got)
	}
}
