package idempotency_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// A handler that passed its commit point has its outcome stored whatever
// its code, so a transient code after the commit does not run the request
// again; without a commit point, a transient code releases the key.
func TestServerCommitPoint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		commit   bool
		code     codes.Code
		wantRuns int64
	}{
		{"commit then DEADLINE_EXCEEDED", true, codes.DeadlineExceeded, 1},
		{"commit then UNAVAILABLE", true, codes.Unavailable, 1},
		{"commit then OK", true, codes.OK, 1},
		{"no commit, UNAVAILABLE", false, codes.Unavailable, 2},
		{"no commit, FAILED_PRECONDITION", false, codes.FailedPrecondition, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
				if tc.commit {
					idempotency.Commit(ctx)
				}
				if tc.code != codes.OK {
					return nil, status.Error(tc.code, "after the charge")
				}
				return echo(ctx, r)
			})
			ctx := withKeyMD(context.Background(), "k")
			for range 2 {
				if _, _, err := ks.call(ctx, "p"); status.Code(err) != tc.code {
					t.Fatalf("call: %v, want %v", err, tc.code)
				}
			}
			if n := ks.runs.Load(); n != tc.wantRuns {
				t.Errorf("handler ran %d times, want %d", n, tc.wantRuns)
			}
		})
	}
	// Outside a deduplicated request, Commit does nothing.
	idempotency.Commit(context.Background())
}

// A panic before the commit point, recovered by an interceptor inside
// this one or not, gives the key back; after it, the panic is the stored
// outcome.
func TestServerPanics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handler  func(ctx context.Context) (any, error)
		wantRuns int
	}{
		{"recovered panic", func(context.Context) (any, error) { return nil, idempotency.RecoveredPanic("boom") }, 2},
		{"panic", func(context.Context) (any, error) { panic("boom") }, 2},
		{"panic after commit", func(ctx context.Context) (any, error) { idempotency.Commit(ctx); panic("boom") }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.Unauthenticated))
			if err != nil {
				t.Fatal(err)
			}
			runs := 0
			call := func() (err error) {
				defer func() {
					if p := recover(); p != nil {
						err = status.Error(codes.Internal, "panicked")
					}
				}()
				ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "k"))
				_, err = srv.UnaryServerInterceptor()(ctx, &policytestv1.PingRequest{}, &grpc.UnaryServerInfo{FullMethod: keyedWrite},
					func(ctx context.Context, _ any) (any, error) { runs++; return tc.handler(ctx) })
				return err
			}
			for range 2 {
				if err := call(); status.Code(err) != codes.Internal {
					t.Fatalf("call: %v, want INTERNAL", err)
				}
			}
			if runs != tc.wantRuns {
				t.Errorf("handler ran %d times, want %d", runs, tc.wantRuns)
			}
		})
	}
}

// signalStore is a MemoryStore whose writes can be made to fail and which
// signals every lease extension.
type signalStore struct {
	*idempotency.MemoryStore
	down     atomic.Bool
	extended chan struct{}
}

func (s *signalStore) Complete(ctx context.Context, k idempotency.Key, token string, fp idempotency.Fingerprint, o *idempotency.Outcome, ttl time.Duration) error {
	if s.down.Load() {
		return errDown
	}
	return s.MemoryStore.Complete(ctx, k, token, fp, o, ttl)
}

func (s *signalStore) Extend(ctx context.Context, k idempotency.Key, token string, lease time.Duration) error {
	err := s.MemoryStore.Extend(ctx, k, token, lease)
	s.extended <- struct{}{}
	return err
}

// A handler slower than its lease keeps its claim: the server extends the
// lease while the handler runs, so its key is not claimed again.
func TestServerExtendsLease(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	mem, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	st := &signalStore{MemoryStore: mem, extended: make(chan struct{}, 1)}
	entered, release := make(chan struct{}), make(chan struct{})
	ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		close(entered)
		<-release
		return echo(ctx, r)
	}, idempotency.WithStore(st), idempotency.WithClock(clk), idempotency.WithLease(9*time.Second))
	ctx := withKeyMD(context.Background(), "k")
	done := make(chan error, 1)
	go func() { _, _, err := ks.call(ctx, "p"); done <- err }()
	<-entered
	for range 5 { // 15 s, well past the 9 s lease
		clk.BlockUntil(1)
		clk.Advance(3 * time.Second)
		<-st.extended
	}
	fp, err := idempotency.FingerprintOf(keyedWrite, &policytestv1.PingRequest{Payload: "p"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Claim(context.Background(), idempotency.Key{Identity: "anonymous", Method: keyedWrite, Key: "k"}, fp, time.Minute)
	if err != nil || c.State != idempotency.InFlight {
		t.Fatalf("claim while the slow handler runs: %v, %v; want in flight", c.State, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, hdr, err := ks.call(ctx, "p"); err != nil || !replayed(hdr) || ks.runs.Load() != 1 {
		t.Errorf("after the slow run: %v, %v, runs %d; want its replay", err, hdr, ks.runs.Load())
	}
}

// An outcome the store could not take (it was down when the handler
// finished) is not lost: a retry after the claim's lease ended is
// answered with it, not run again, and it is written once the store is
// back.
func TestServerUnsavedOutcome(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	mem, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	st := &signalStore{MemoryStore: mem, extended: make(chan struct{}, 100)}
	ks := newKeyedServer(t, echo, idempotency.WithStore(st))
	ctx := withKeyMD(context.Background(), "k")
	st.down.Store(true)
	first, _, err := ks.call(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * idempotency.DefaultLease)
	for _, down := range []bool{true, false, false} {
		st.down.Store(down)
		again, hdr, err := ks.call(ctx, "p")
		if err != nil || !replayed(hdr) || again.Payload != first.Payload {
			t.Fatalf("retry with the store down=%v: %v, %v, %v; want the first outcome", down, again, hdr, err)
		}
	}
	if n := ks.runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	if s := mem.Stats(); s.Entries != 1 {
		t.Errorf("store holds %d entries, want the written outcome", s.Entries)
	}
}

// Each outcome the store could not take is answered from the server until
// it is written: writing one of them (its retry found the store back) does
// not stop the server answering the others.
func TestServerUnsavedOutcomesOutliveAnothersWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keys    []string // run with the store down, in order
		retried []string // retried with the store back, in order
	}{
		{"first written, second kept", []string{"a", "b"}, []string{"a"}},
		{"second written, first kept", []string{"a", "b"}, []string{"b"}},
		{"two of three written", []string{"a", "b", "c"}, []string{"c", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1e9, 0))
			mem, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			st := &signalStore{MemoryStore: mem, extended: make(chan struct{}, 100)}
			ks := newKeyedServer(t, echo, idempotency.WithStore(st))
			st.down.Store(true)
			first := map[string]string{}
			for _, k := range tc.keys {
				resp, _, err := ks.call(withKeyMD(context.Background(), k), "p")
				if err != nil {
					t.Fatal(err)
				}
				first[k] = resp.Payload
			}
			clk.Advance(2 * idempotency.DefaultLease) // the claims are gone
			st.down.Store(false)
			written := map[string]bool{}
			for _, k := range tc.retried {
				if _, hdr, err := ks.call(withKeyMD(context.Background(), k), "p"); err != nil || !replayed(hdr) {
					t.Fatalf("retry of %q with the store back: %v, %v; want its first outcome", k, hdr, err)
				}
				written[k] = true
			}
			st.down.Store(true)
			for _, k := range tc.keys {
				if written[k] {
					continue
				}
				again, hdr, err := ks.call(withKeyMD(context.Background(), k), "p")
				if err != nil || !replayed(hdr) || again.Payload != first[k] {
					t.Fatalf("retry of %q, not yet written: %v, %v, %v; want its first outcome", k, again, hdr, err)
				}
			}
			if n, want := ks.runs.Load(), int64(len(tc.keys)); n != want {
				t.Errorf("handler ran %d times, want %d", n, want)
			}
			if s := mem.Stats(); s.Entries != len(tc.retried) {
				t.Errorf("store holds %d entries, want the %d written outcomes", s.Entries, len(tc.retried))
			}
		})
	}
}
