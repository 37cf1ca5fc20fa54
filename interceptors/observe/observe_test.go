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

// keys wants the kinds it lists.
type keys []observe.Kind

func (keys) Observe(context.Context, observe.Event) {}
func (k keys) Wants(_ context.Context, kind observe.Kind) bool {
	for _, x := range k {
		if x == kind {
			return true
		}
	}
	return false
}

func TestWants(t *testing.T) {
	ctx := context.Background()
	plain := observe.Func(func(context.Context, observe.Event) {})
	for _, tc := range []struct {
		name string
		o    observe.Observer
		k    observe.Kind
		want bool
	}{
		{"nil", nil, observe.AttemptEnd, false},
		{"an observer that cannot tell", plain, observe.AttemptEnd, true},
		{"a selector that wants the kind", keys{observe.AttemptEnd}, observe.AttemptEnd, true},
		{"a selector that wants another", keys{observe.KeyAttached}, observe.AttemptEnd, false},
		{"multi, none wants it", observe.Multi(keys{}, keys{observe.Backoff}), observe.AttemptEnd, false},
		{"multi, one wants it", observe.Multi(keys{}, keys{observe.AttemptEnd}), observe.AttemptEnd, true},
		{"multi, one cannot tell", observe.Multi(keys{}, plain), observe.AttemptEnd, true},
	} {
		if got := observe.Wants(ctx, tc.o, tc.k); got != tc.want {
			t.Errorf("%s: Wants = %v, want %v", tc.name, got, tc.want)
		}
	}
}
