package observe_test

import (
	"context"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/observe"
)

func TestMulti(t *testing.T) {
	var got []string
	rec := func(name string) observe.Observer {
		return observe.Func(func(_ context.Context, e observe.Event) { got = append(got, name+":"+e.Kind.String()) })
	}
	if observe.Multi() != nil || observe.Multi(nil, nil) != nil {
		t.Fatal("Multi of nothing must be nil")
	}
	one := rec("a")
	if o := observe.Multi(nil, one); o == nil {
		t.Fatal("Multi dropped an observer")
	}
	m := observe.Multi(rec("a"), observe.Multi(rec("b"), rec("c")))
	m.Observe(context.Background(), observe.Event{Kind: observe.Backoff})
	if want := "a:backoff b:backoff c:backoff"; join(got) != want {
		t.Fatalf("got %q want %q", join(got), want)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestAttempt(t *testing.T) {
	ctx := context.Background()
	if a := observe.AttemptFrom(ctx); a.N != 1 || a.Hedge {
		t.Fatalf("default attempt %+v", a)
	}
	ctx = observe.WithAttempt(ctx, observe.Attempt{N: 3, Hedge: true, Backoff: time.Second, BackoffReason: "pushback"})
	if a := observe.AttemptFrom(ctx); a.N != 3 || !a.Hedge || a.Backoff != time.Second || a.BackoffReason != "pushback" {
		t.Fatalf("attempt %+v", a)
	}
}

func TestKindNames(t *testing.T) {
	for k := observe.AttemptStart; k <= observe.KeyConflict; k++ {
		if k.String() == "unknown" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if observe.Kind(200).String() != "unknown" {
		t.Error("out of range kind")
	}
}

func BenchmarkObserveNoAlloc(b *testing.B) {
	var o observe.Observer = observe.Func(func(context.Context, observe.Event) {})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		o.Observe(ctx, observe.Event{Kind: observe.AttemptEnd, Method: "/a.B/C", Attempt: 2})
	}
}

type watcher bool

func (watcher) Observe(context.Context, observe.Event) {}
func (w watcher) WatchesAttempts(context.Context) bool { return bool(w) }

func TestWatchesAttempts(t *testing.T) {
	ctx := context.Background()
	plain := observe.Func(func(context.Context, observe.Event) {})
	for _, tc := range []struct {
		name string
		o    observe.Observer
		want bool
	}{
		{"nil", nil, false},
		{"an observer that cannot tell", plain, true},
		{"a watcher that wants them", watcher(true), true},
		{"a watcher that does not", watcher(false), false},
		{"multi, none wants them", observe.Multi(watcher(false), watcher(false)), false},
		{"multi, one wants them", observe.Multi(watcher(false), watcher(true)), true},
		{"multi, one cannot tell", observe.Multi(watcher(false), plain), true},
	} {
		if got := observe.WatchesAttempts(ctx, tc.o); got != tc.want {
			t.Errorf("%s: WatchesAttempts = %v, want %v", tc.name, got, tc.want)
		}
	}
}
