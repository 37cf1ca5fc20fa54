package idempotency_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/redistest"
	brokenv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/broken/v1"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// keyedServer serves KeyedWrite through the server interceptor; the handler
// counts its runs and answers with fn.
type keyedServer struct {
	runs   atomic.Int64
	client policytestv1.TunedServiceClient
	events *events
	idem   *idempotency.Server
}

func newKeyedServer(t *testing.T, fn func(context.Context, *policytestv1.PingRequest) (*policytestv1.PingResponse, error), opts ...idempotency.ServerOption) *keyedServer {
	t.Helper()
	ks := &keyedServer{events: &events{}}
	idem, err := idempotency.NewServer(append([]idempotency.ServerOption{idempotency.WithIdentity(idempotency.Unauthenticated), idempotency.WithObserver(ks.events)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ks.idem = idem
	count := func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		ks.runs.Add(1)
		return fn(ctx, r)
	}
	addr := serve(t, &tuned{keyed: count, inherit: count}, grpc.UnaryInterceptor(idem.UnaryServerInterceptor()))
	ks.client = policytestv1.NewTunedServiceClient(testserver.Dial(t, addr))
	return ks
}

func echo(_ context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return &policytestv1.PingResponse{Payload: "echo:" + r.Payload}, nil
}

func (ks *keyedServer) call(ctx context.Context, payload string) (*policytestv1.PingResponse, metadata.MD, error) {
	var hdr metadata.MD
	resp, err := ks.client.KeyedWrite(ctx, &policytestv1.PingRequest{Payload: payload}, grpc.Header(&hdr))
	return resp, hdr, err
}

func replayed(hdr metadata.MD) bool { return idempotency.Replayed(hdr) }

func TestServerReplay(t *testing.T) {
	ks := newKeyedServer(t, echo)
	ctx := withKeyMD(context.Background(), "k1")
	first, hdr, err := ks.call(ctx, "a")
	if err != nil || replayed(hdr) {
		t.Fatalf("first call: %v, header %v", err, hdr)
	}
	second, hdr, err := ks.call(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !replayed(hdr) {
		t.Errorf("second call header %v, want %s: true", hdr, idempotency.ReplayedMetadata)
	}
	if !proto.Equal(first, second) {
		t.Errorf("replay %v, want %v", second, first)
	}
	if n := ks.runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	want := observe.Event{Kind: observe.Replay, Method: keyedWrite, Reason: idempotency.KeyHash("k1")}
	if got := ks.events.kinds(observe.Replay); len(got) != 1 || got[0] != want {
		t.Errorf("replay events %+v, want %+v", got, want)
	}
	// Another key is another operation.
	if _, hdr, err := ks.call(withKeyMD(context.Background(), "k2"), "a"); err != nil || replayed(hdr) || ks.runs.Load() != 2 {
		t.Errorf("new key: %v, header %v, runs %d", err, hdr, ks.runs.Load())
	}
}

func TestServerRefusals(t *testing.T) {
	ks := newKeyedServer(t, echo)
	if _, _, err := ks.call(withKeyMD(context.Background(), "used"), "a"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ctx     context.Context
		payload string
		code    codes.Code
		msg     string
	}{
		{"missing key", context.Background(), "a", codes.InvalidArgument, "requires an idempotency key"},
		{"two keys", withKeyMD(context.Background(), "x", "y"), "a", codes.InvalidArgument, "want one"},
		{"invalid key", withKeyMD(context.Background(), " x"), "a", codes.InvalidArgument, "space"},
		{"too long key", withKeyMD(context.Background(), strings.Repeat("x", 256)), "a", codes.InvalidArgument, "more than 255"},
		{"different request", withKeyMD(context.Background(), "used"), "b", codes.FailedPrecondition, "already used for a different request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := ks.runs.Load()
			_, hdr, err := ks.call(tc.ctx, tc.payload)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.code, tc.msg)
			}
			if replayed(hdr) {
				t.Error("refusal marked as replay")
			}
			if ks.runs.Load() != before {
				t.Error("handler ran")
			}
		})
	}
	if got := ks.events.kinds(observe.KeyConflict); len(got) != 1 || got[0].Reason != "fingerprint" {
		t.Errorf("conflict events %+v, want one fingerprint conflict", got)
	}
	// Methods that do not require a key pass through, key or not.
	if _, err := ks.client.Inherit(context.Background(), &policytestv1.PingRequest{}); err != nil {
		t.Errorf("Inherit: %v", err)
	}
}

// joinedEvents signals each request that joins a claim in flight.
type joinedEvents struct {
	events
	joined chan struct{}
}

func (e *joinedEvents) Observe(ctx context.Context, ev observe.Event) {
	e.events.Observe(ctx, ev)
	if ev.Kind == observe.KeyConflict && ev.Reason == "joined" {
		e.joined <- struct{}{}
	}
}

// Duplicates that arrive while the first request runs wait for its
// outcome and all receive it; the handler runs once. The memory store
// tells waiters when the claim ends, Redis is polled.
func TestServerJoinsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) idempotency.Store
	}{
		{"memory", func(t *testing.T) idempotency.Store {
			st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"redis", func(t *testing.T) idempotency.Store { return newRedisStore(t, redistest.Start(t).Addr) }},
	} {
		t.Run(tc.name, func(t *testing.T) { joinsInFlight(t, tc.store(t)) })
	}
}

func joinsInFlight(t *testing.T, st idempotency.Store) {
	const duplicates = 100
	entered, release := make(chan struct{}), make(chan struct{})
	ev := &joinedEvents{joined: make(chan struct{}, duplicates)}
	ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		if r.Payload == "slow" {
			close(entered)
			<-release
		}
		return echo(ctx, r)
	}, idempotency.WithObserver(ev), idempotency.WithStore(st))
	ctx := withKeyMD(context.Background(), "k")
	type answer struct {
		resp *policytestv1.PingResponse
		hdr  metadata.MD
		err  error
	}
	first := make(chan answer, 1)
	go func() { r, h, err := ks.call(ctx, "slow"); first <- answer{r, h, err} }()
	<-entered
	answers := make(chan answer, duplicates)
	for range duplicates {
		go func() { r, h, err := ks.call(ctx, "slow"); answers <- answer{r, h, err} }()
	}
	for range duplicates {
		<-ev.joined
	}
	// A different request with the key in flight is a misuse, not a race.
	if _, _, err := ks.call(ctx, "other"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("different request in flight: %v, want FAILED_PRECONDITION", err)
	}
	close(release)
	want := <-first
	if want.err != nil {
		t.Fatal(want.err)
	}
	for range duplicates {
		a := <-answers
		if a.err != nil || !proto.Equal(a.resp, want.resp) || !replayed(a.hdr) {
			t.Fatalf("duplicate: %v, %v, header %v; want the first outcome, replayed", a.resp, a.err, a.hdr)
		}
	}
	if n := ks.runs.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

// Beyond WithMaxWaiters, or past its own deadline, a duplicate does not
// wait: ABORTED or DEADLINE_EXCEEDED, and the handler does not run again.
func TestServerInFlightRefusals(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		close(entered)
		<-release
		return echo(ctx, r)
	}, idempotency.WithMaxWaiters(0))
	ctx := withKeyMD(context.Background(), "k")
	done := make(chan error, 1)
	go func() { _, _, err := ks.call(ctx, "slow"); done <- err }()
	<-entered
	_, _, err := ks.call(ctx, "slow")
	if info := errorInfo(err); status.Code(err) != codes.Aborted || info.GetReason() != idempotency.ReasonInProgress || info.GetDomain() != idempotency.ErrorDomain {
		t.Errorf("no room to wait: %v (%v), want ABORTED with the in-progress reason", err, info)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ks.events.kinds(observe.KeyConflict); len(got) != 1 || got[0].Reason != "in_flight" {
		t.Errorf("conflict events %+v", got)
	}

	entered2, release2 := make(chan struct{}), make(chan struct{})
	ks2 := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		close(entered2)
		<-release2
		return echo(ctx, r)
	})
	go func() { _, _, err := ks2.call(ctx, "slow"); done <- err }()
	<-entered2
	// Called directly, so that the answer can only be the server's: a
	// client whose own deadline passed would fail the call by itself.
	expired, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	in := metadata.NewIncomingContext(expired, metadata.Pairs(policy.KeyMetadata, "k"))
	info := &grpc.UnaryServerInfo{FullMethod: policytestv1.TunedService_KeyedWrite_FullMethodName}
	_, err = ks2.idem.UnaryServerInterceptor()(in, &policytestv1.PingRequest{Payload: "slow"}, info, func(context.Context, any) (any, error) {
		t.Error("the handler ran for a request that found the key claimed")
		return nil, nil
	})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(status.Convert(err).Message(), "gave up waiting") {
		t.Errorf("deadline while waiting: %v, want the server's DEADLINE_EXCEEDED for giving up the wait", err)
	}
	close(release2)
	if err := <-done; err != nil || ks2.runs.Load() != 1 {
		t.Fatalf("first: %v, runs %d", err, ks2.runs.Load())
	}
}

// Each code is stored and replayed, or released so the same key runs again.
func TestServerStoredCodes(t *testing.T) {
	detail := &errdetails.ErrorInfo{Reason: "CARD_DECLINED", Domain: "payments.example.com"}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		t.Run(c.String(), func(t *testing.T) {
			ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
				if c == codes.OK {
					return echo(ctx, r)
				}
				st, err := status.New(c, "business says "+c.String()).WithDetails(detail)
				if err != nil {
					return nil, err
				}
				return nil, st.Err()
			})
			ctx := withKeyMD(context.Background(), "k")
			_, _, err1 := ks.call(ctx, "p")
			_, hdr, err2 := ks.call(ctx, "p")
			if status.Code(err1) != c || status.Code(err2) != c {
				t.Fatalf("codes %v, %v; want %v", status.Code(err1), status.Code(err2), c)
			}
			stored := idempotency.DefaultStoredCodes.Has(c)
			if runs := ks.runs.Load(); (runs == 1) != stored {
				t.Fatalf("handler ran %d times; stored = %v", runs, stored)
			}
			if replayed(hdr) != stored {
				t.Errorf("replay header %v; stored = %v", hdr, stored)
			}
			if stored && c != codes.OK {
				s1, s2 := status.Convert(err1), status.Convert(err2)
				if !proto.Equal(s1.Proto(), s2.Proto()) {
					t.Errorf("replayed status %v, want %v", s2.Proto(), s1.Proto())
				}
			}
		})
	}
}

func TestServerIdentity(t *testing.T) {
	tenant := func(ctx context.Context) (string, error) {
		v := metadata.ValueFromIncomingContext(ctx, "tenant")
		switch {
		case len(v) != 1:
			return "", errors.New("no tenant")
		case v[0] == "banned":
			return "", status.Error(codes.PermissionDenied, "banned")
		}
		return v[0], nil
	}
	ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		return &policytestv1.PingResponse{Payload: metadata.ValueFromIncomingContext(ctx, "tenant")[0]}, nil
	}, idempotency.WithIdentity(tenant))
	ctx := withKeyMD(context.Background(), "shared-key")
	for _, tn := range []string{"acme", "globex", "acme"} {
		resp, _, err := ks.call(metadata.AppendToOutgoingContext(ctx, "tenant", tn), "same")
		if err != nil || resp.Payload != tn {
			t.Fatalf("tenant %s: %v, %v; want its own answer", tn, resp, err)
		}
	}
	if n := ks.runs.Load(); n != 2 {
		t.Errorf("handler ran %d times, want once per tenant", n)
	}
	if _, _, err := ks.call(ctx, "same"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no identity: %v, want UNAUTHENTICATED", err)
	}
	if _, _, err := ks.call(metadata.AppendToOutgoingContext(ctx, "tenant", "banned"), "same"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("identity status: %v, want PERMISSION_DENIED", err)
	}
}

// A store whose room is all claims in flight answers a new key
// RESOURCE_EXHAUSTED with a retry delay, until a claim ends.
func TestServerStoreFull(t *testing.T) {
	st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		if r.Payload == "slow" {
			close(entered)
			<-release
		}
		return echo(ctx, r)
	}, idempotency.WithStore(st))
	done := make(chan error, 1)
	go func() { _, _, err := ks.call(withKeyMD(context.Background(), "k1"), "slow"); done <- err }()
	<-entered
	var trailer metadata.MD
	_, err = ks.client.KeyedWrite(withKeyMD(context.Background(), "k2"), &policytestv1.PingRequest{Payload: "a"}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted || !strings.HasPrefix(status.Convert(err).Message(), "failsoft: idempotency: ") {
		t.Fatalf("full store: %v, want RESOURCE_EXHAUSTED", err)
	}
	if info := errorInfo(err); info.GetReason() != idempotency.ReasonStoreFull {
		t.Errorf("full store: reason %v, want %s", info, idempotency.ReasonStoreFull)
	}
	var delay *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri
		}
	}
	if delay == nil || delay.RetryDelay.AsDuration() != time.Second || trailer.Get("grpc-retry-pushback-ms")[0] != "1000" {
		t.Errorf("retry info %v, trailer %v; want a delay of a second", delay, trailer)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, err := ks.call(withKeyMD(context.Background(), "k2"), "a"); err != nil {
		t.Fatalf("after the claim ended: %v", err)
	}
}

// A flood of new keys from one authenticated caller leaves another's new
// keys protected and its stored outcomes replayed.
func TestServerFloodFromOneIdentity(t *testing.T) {
	st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	d := newDirect(t, idempotency.WithStore(st), idempotency.WithIdentity(tokenIdentity))
	victim, flooder := caller{addr: "10.0.0.1", token: "acct-7"}, caller{addr: "10.0.0.2", token: "acct-8"}
	if _, err := d.call(victim.ctx("before"), "p"); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := d.call(flooder.ctx(fmt.Sprint("flood-", i)), "p"); err != nil {
			t.Fatalf("flood key %d: %v", i, err)
		}
	}
	if _, err := d.call(victim.ctx("after"), "p"); err != nil {
		t.Fatalf("victim's new key: %v", err)
	}
	runs := d.runs
	for _, k := range []string{"before", "after"} {
		if _, err := d.call(victim.ctx(k), "p"); err != nil {
			t.Fatal(err)
		}
	}
	if d.runs != runs {
		t.Errorf("victim's keys ran again after the flood")
	}
}

// brokenStore fails every operation, like an unreachable Redis.
type brokenStore struct{}

var errDown = errors.New("connection refused")

func (brokenStore) Claim(context.Context, idempotency.Key, idempotency.Fingerprint, time.Duration) (idempotency.Claim, error) {
	return idempotency.Claim{}, errDown
}

func (brokenStore) Complete(context.Context, idempotency.Key, string, idempotency.Fingerprint, *idempotency.Outcome, time.Duration) error {
	return errDown
}

func (brokenStore) Release(context.Context, idempotency.Key, string) error { return errDown }

func (brokenStore) Extend(context.Context, idempotency.Key, string, time.Duration) error {
	return errDown
}

func TestServerStoreDown(t *testing.T) {
	closed := newKeyedServer(t, echo, idempotency.WithStore(brokenStore{}))
	if _, _, err := closed.call(withKeyMD(context.Background(), "k"), "a"); status.Code(err) != codes.Unavailable || closed.runs.Load() != 0 {
		t.Errorf("fail closed: %v, %d runs; want UNAVAILABLE and none", err, closed.runs.Load())
	}
	open := newKeyedServer(t, echo, idempotency.WithStore(brokenStore{}), idempotency.WithFailOpen())
	if _, _, err := open.call(withKeyMD(context.Background(), "k"), "a"); err != nil || open.runs.Load() != 1 {
		t.Errorf("fail open: %v, %d runs; want the handler's answer", err, open.runs.Load())
	}
}

// flakyStore is a working store whose chosen operations fail.
type flakyStore struct {
	idempotency.Store
	claim, complete, release bool
}

func (f flakyStore) Claim(ctx context.Context, k idempotency.Key, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Claim, error) {
	if f.claim {
		return idempotency.Claim{}, errDown
	}
	return f.Store.Claim(ctx, k, fp, lease)
}

func (f flakyStore) Complete(ctx context.Context, k idempotency.Key, token string, fp idempotency.Fingerprint, o *idempotency.Outcome, ttl time.Duration) error {
	if f.complete {
		return errDown
	}
	return f.Store.Complete(ctx, k, token, fp, o, ttl)
}

func (f flakyStore) Release(ctx context.Context, k idempotency.Key, token string) error {
	if f.release {
		return errDown
	}
	return f.Store.Release(ctx, k, token)
}

// TestServerStoreErrorEvents: every failure of the store, and every
// outcome that could not be stored, is reported, saying where it happened:
// deduplication must not stop quietly.
func TestServerStoreErrorEvents(t *testing.T) {
	unavailable := func(context.Context, *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		return nil, status.Error(codes.Unavailable, "try again")
	}
	for _, tc := range []struct {
		name     string
		store    flakyStore
		failOpen bool
		handler  func(context.Context, *policytestv1.PingRequest) (*policytestv1.PingResponse, error)
		code     codes.Code // the caller's
		where    string     // the event's Reason, "" for no event
	}{
		{name: "store works", handler: echo, code: codes.OK},
		{name: "claim fails", store: flakyStore{claim: true}, handler: echo, code: codes.Unavailable, where: "claim"},
		{name: "claim fails, fail open", store: flakyStore{claim: true}, failOpen: true, handler: echo, code: codes.OK, where: "claim_fail_open"},
		{name: "complete fails", store: flakyStore{complete: true}, handler: echo, code: codes.OK, where: "complete"},
		{name: "release fails", store: flakyStore{release: true}, handler: unavailable, code: codes.Unavailable, where: "release"},
		{name: "release fails, nothing to release", store: flakyStore{release: true}, handler: echo, code: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{})
			if err != nil {
				t.Fatal(err)
			}
			st := tc.store
			st.Store = mem
			opts := []idempotency.ServerOption{idempotency.WithStore(st)}
			if tc.failOpen {
				opts = append(opts, idempotency.WithFailOpen())
			}
			ks := newKeyedServer(t, tc.handler, opts...)
			if _, _, err := ks.call(withKeyMD(context.Background(), "k"), "a"); status.Code(err) != tc.code {
				t.Fatalf("call: %v, want %v", err, tc.code)
			}
			got := ks.events.kinds(observe.KeyStoreError)
			switch {
			case tc.where == "" && len(got) != 0:
				t.Errorf("events %+v, want none", got)
			case tc.where != "" && (len(got) != 1 || got[0].Reason != tc.where || !errors.Is(got[0].Err, errDown) ||
				got[0].Method != policytestv1.TunedService_KeyedWrite_FullMethodName):
				t.Errorf("events %+v, want one at %q with the store's error", got, tc.where)
			}
		})
	}
}

// An outcome that cannot be encoded (a response that is not a protobuf
// message, from a handler called without gRPC's codec) is not stored, and
// is reported.
func TestServerEncodeErrorEvent(t *testing.T) {
	ev := &events{}
	idem, err := idempotency.NewServer(idempotency.WithObserver(ev),
		idempotency.WithIdentity(func(context.Context) (string, error) { return "tenant", nil }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "k"))
	info := &grpc.UnaryServerInfo{FullMethod: policytestv1.TunedService_KeyedWrite_FullMethodName}
	resp, err := idem.UnaryServerInterceptor()(ctx, &policytestv1.PingRequest{}, info, func(context.Context, any) (any, error) {
		return "not a message", nil
	})
	if err != nil || resp != "not a message" {
		t.Fatalf("the handler's answer did not reach the caller: %v, %v", resp, err)
	}
	if got := ev.kinds(observe.KeyStoreError); len(got) != 1 || got[0].Reason != "encode" || got[0].Err == nil {
		t.Errorf("events %+v, want one at \"encode\" with the error", got)
	}
}

// A crashed handler's lease expires and its key can be claimed again; the
// crashed run's late completion does not overwrite the new one.
func TestServerLeaseExpiry(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ks := newKeyedServer(t, echo, idempotency.WithStore(st), idempotency.WithLease(10*time.Second))
	key := idempotency.Key{Identity: "anonymous", Method: keyedWrite, Key: "k"}
	fp, err := idempotency.FingerprintOf(keyedWrite, &policytestv1.PingRequest{Payload: "a"})
	if err != nil {
		t.Fatal(err)
	}
	// A process claimed the key and died.
	c, err := st.Claim(context.Background(), key, fp, 10*time.Second)
	if err != nil || c.State != idempotency.Claimed {
		t.Fatal(c, err)
	}
	// A retry waits for the dead claim until its lease ends, then runs.
	ctx := withKeyMD(context.Background(), "k")
	type answer struct {
		hdr metadata.MD
		err error
	}
	retried := make(chan answer, 1)
	go func() { _, hdr, err := ks.call(ctx, "a"); retried <- answer{hdr, err} }()
	clk.BlockUntil(1)
	if n := ks.runs.Load(); n != 0 {
		t.Fatalf("ran %d times within the lease", n)
	}
	clk.Advance(10 * time.Second)
	if a := <-retried; a.err != nil || replayed(a.hdr) || ks.runs.Load() != 1 {
		t.Fatalf("after the lease: %v, %v, runs %d; want a fresh run", a.err, a.hdr, ks.runs.Load())
	}
	if err := st.Complete(context.Background(), key, c.Token, fp, &idempotency.Outcome{}, time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Errorf("late completion: %v, want ErrLeaseLost", err)
	}
	if _, hdr, err := ks.call(ctx, "a"); err != nil || !replayed(hdr) {
		t.Errorf("after the new run: %v, %v; want its replay", err, hdr)
	}
}

// A panicking handler gives its key back.
func TestServerPanicReleases(t *testing.T) {
	srv, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.PeerIdentity))
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "k"))
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5}})
	info := &grpc.UnaryServerInfo{FullMethod: keyedWrite}
	req := &policytestv1.PingRequest{}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic swallowed")
			}
		}()
		_, _ = srv.UnaryServerInterceptor()(ctx, req, info, func(context.Context, any) (any, error) { panic("boom") })
	}()
	resp, err := srv.UnaryServerInterceptor()(ctx, req, info, func(context.Context, any) (any, error) { return &policytestv1.PingResponse{Payload: "ok"}, nil })
	if err != nil || resp.(*policytestv1.PingResponse).Payload != "ok" {
		t.Fatalf("after panic: %v, %v; want a fresh run", resp, err)
	}
	// Requests that are not protobuf messages cannot be fingerprinted.
	if _, err := srv.UnaryServerInterceptor()(ctx, "not proto", info, nil); status.Code(err) != codes.Internal {
		t.Errorf("non-proto request: %v, want INTERNAL", err)
	}
	// Nor can a request without a peer be attributed.
	noPeer := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "k"))
	if _, err := srv.UnaryServerInterceptor()(noPeer, req, info, nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no peer: %v, want UNAUTHENTICATED", err)
	}
	broken := &grpc.UnaryServerInfo{FullMethod: brokenv1.BrokenService_ZeroTimeout_FullMethodName}
	if _, err := srv.UnaryServerInterceptor()(ctx, req, broken, nil); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("broken policy: %v, want FAILED_PRECONDITION", err)
	}
	if err := srv.StreamServerInterceptor()(nil, fakeStream{ctx}, &grpc.StreamServerInfo{FullMethod: brokenv1.BrokenService_ZeroTimeout_FullMethodName}, nil); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("broken stream policy: %v, want FAILED_PRECONDITION", err)
	}
}

type fakeStream struct{ ctx context.Context }

func (s fakeStream) Context() context.Context   { return s.ctx }
func (fakeStream) SetHeader(metadata.MD) error  { return nil }
func (fakeStream) SendHeader(metadata.MD) error { return nil }
func (fakeStream) SetTrailer(metadata.MD)       {}
func (fakeStream) SendMsg(any) error            { return nil }
func (fakeStream) RecvMsg(any) error            { return nil }

func TestPeerIdentity(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "billing", Organization: []string{"Acme"}}}
	tests := []struct {
		name string
		p    *peer.Peer
		want string
	}{
		{"tcp", &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4321}}, "ip:192.0.2.7"},
		{"ipv6", &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}}, "ip:2001:db8::1"},
		{"unix", &peer.Peer{Addr: &net.UnixAddr{Name: "/run/s.sock", Net: "unix"}}, "unix:/run/s.sock"},
		{"verified cert", &peer.Peer{
			Addr:     &net.TCPAddr{IP: net.ParseIP("192.0.2.7")},
			AuthInfo: credentials.TLSInfo{State: tlsState([][]*x509.Certificate{{leaf}})},
		}, "x509:CN=billing,O=Acme"},
		{"unverified cert", &peer.Peer{
			Addr:     &net.TCPAddr{IP: net.ParseIP("192.0.2.7")},
			AuthInfo: credentials.TLSInfo{State: tlsState(nil)},
		}, "ip:192.0.2.7"},
	}
	for _, tc := range tests {
		got, err := idempotency.PeerIdentity(peer.NewContext(context.Background(), tc.p))
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := idempotency.PeerIdentity(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no peer: %v", err)
	}
	if _, err := idempotency.PeerIdentity(peer.NewContext(context.Background(), &peer.Peer{})); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no address: %v", err)
	}
}

// A replay sends the header and trailer metadata the handler set.
func TestServerReplaysMetadata(t *testing.T) {
	ks := newKeyedServer(t, func(ctx context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-charge-id", "ch_1", "x-bin-bin", "\x00\xff")); err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs("x-ledger-seq", "42")); err != nil {
			return nil, err
		}
		return echo(ctx, r)
	})
	call := func() (metadata.MD, metadata.MD) {
		var hdr, trl metadata.MD
		_, err := ks.client.KeyedWrite(withKeyMD(context.Background(), "k"), &policytestv1.PingRequest{Payload: "p"}, grpc.Header(&hdr), grpc.Trailer(&trl))
		if err != nil {
			t.Fatal(err)
		}
		return hdr, trl
	}
	h1, t1 := call()
	h2, t2 := call()
	if ks.runs.Load() != 1 || !replayed(h2) || replayed(h1) {
		t.Fatalf("runs %d, headers %v then %v", ks.runs.Load(), h1, h2)
	}
	for _, k := range []string{"x-charge-id", "x-bin-bin"} {
		if a, b := h1.Get(k), h2.Get(k); len(a) != 1 || len(b) != 1 || a[0] != b[0] {
			t.Errorf("header %s: first %q, replay %q", k, a, b)
		}
	}
	if a, b := t1.Get("x-ledger-seq"), t2.Get("x-ledger-seq"); len(a) != 1 || len(b) != 1 || a[0] != b[0] {
		t.Errorf("trailer: first %q, replay %q", a, b)
	}
}

func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
