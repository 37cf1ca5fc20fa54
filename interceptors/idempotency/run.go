package idempotency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// runState is what the server knows of a handler it runs under a claim.
type runState struct {
	committed atomic.Bool
}

type runCtx struct{}

// Commit marks the handler's commit point: from now on its effects are
// done (the charge is in the ledger), so its outcome is stored and
// replayed whatever code it returns, even a transient one such as
// DEADLINE_EXCEEDED or UNAVAILABLE that would otherwise release the key for
// the request to run again. A handler calls it right after its side
// effects commit. Outside a deduplicated request it does nothing.
func Commit(ctx context.Context) {
	if r, ok := ctx.Value(runCtx{}).(*runState); ok {
		r.committed.Store(true)
	}
}

// PanicError is the error of a handler that panicked and was recovered
// by an interceptor between the server interceptor and the handler. Its
// status is INTERNAL. The server releases the claim of such an outcome
// instead of storing it, unless the handler passed its commit point.
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// GRPCStatus makes the panic an INTERNAL status, without its value, which
// is for the server's logs.
func (e *PanicError) GRPCStatus() *status.Status {
	return status.New(codes.Internal, "failsoft: idempotency: the handler panicked")
}

// RecoveredPanic turns the value of a recovered panic into a *PanicError.
// It fits go-grpc-middleware's recovery.WithRecoveryHandler, for a
// recovery interceptor placed inside the idempotency interceptor.
func RecoveredPanic(p any) error { return &PanicError{Value: p} }

// run runs the handler under a claim, extending the claim's lease while it
// runs, and stores or releases its outcome.
func (s *Server) run(ctx context.Context, req any, method string, k Key, token string, fp Fingerprint, handler grpc.UnaryHandler) (resp any, err error) {
	rs := &runState{}
	ctx = context.WithValue(ctx, runCtx{}, rs)
	stopExtending := s.extendLease(ctx, method, k, token)
	finished := false
	defer func() {
		stopExtending()
		if finished {
			return
		}
		// The handler panicked (or its goroutine exited). Before its
		// commit point it did nothing that a new run could repeat: the key
		// is given back. After it, the panic is the outcome.
		p := recover()
		if rs.committed.Load() {
			o, _ := encodeOutcome(codes.Internal, nil, (&PanicError{Value: p}).GRPCStatus().Err())
			s.complete(ctx, method, k, token, fp, o)
		} else {
			s.release(ctx, method, k, token)
		}
		if p != nil {
			panic(p)
		}
	}()
	var cs *capturingStream
	if sts := grpc.ServerTransportStreamFromContext(ctx); sts != nil {
		cs = &capturingStream{ServerTransportStream: sts}
		ctx = grpc.NewContextWithServerTransportStream(ctx, cs)
	}
	resp, err = handler(ctx, req)
	finished = true
	stopExtending()

	code := outcome.Code(err)
	if !s.stores(code, err, rs.committed.Load()) {
		s.release(ctx, method, k, token)
		return resp, err
	}
	o, encErr := encodeOutcome(code, resp, err)
	if encErr != nil {
		// The outcome cannot be stored. The claim is kept until its lease
		// ends, so that a retry waits rather than runs again at once.
		s.storeError(ctx, method, "encode", encErr)
		return resp, err
	}
	if cs != nil {
		o.Header, o.Trailer = cs.captured()
	}
	s.complete(ctx, method, k, token, fp, o)
	return resp, err
}

// stores reports whether an outcome is stored (and replayed) rather than
// released (and run again by a retry); see the table in the package doc.
func (s *Server) stores(code codes.Code, err error, committed bool) bool {
	switch {
	case committed:
		return true
	case errors.As(err, new(*PanicError)):
		return false
	}
	return s.cfg.stored.Has(code)
}

func (s *Server) release(ctx context.Context, method string, k Key, token string) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.storeTimeout)
	defer cancel()
	if err := s.cfg.store.Release(wctx, k, token); err != nil {
		s.storeError(ctx, method, "release", err)
	}
}

// complete stores o. If the store cannot be written, the outcome is kept
// in this server's memory and answered from there, so that a retry that
// reaches this server after the claim's lease has ended is replayed
// instead of run again; its write is tried again then.
func (s *Server) complete(ctx context.Context, method string, k Key, token string, fp Fingerprint, o *Outcome) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.storeTimeout)
	defer cancel()
	err := s.cfg.store.Complete(wctx, k, token, fp, o, s.cfg.ttl)
	switch {
	case err == nil, errors.Is(err, ErrLeaseLost):
		// Lost: another run replaced the claim, whose outcome stands.
		if err != nil {
			s.storeError(ctx, method, "complete", err)
		}
		return
	}
	s.storeError(ctx, method, "complete", err)
	now := s.cfg.Clock.Now()
	s.unsaved.put(k, token, fp, o, now, now.Add(s.cfg.ttl))
}

// extendLease renews the claim's lease while the handler runs, at a third
// of the lease, so that a slow handler's key is not claimed again. The
// returned function stops it and waits until it has stopped.
func (s *Server) extendLease(ctx context.Context, method string, k Key, token string) (stop func()) {
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			t := s.cfg.Clock.NewTimer(s.cfg.lease / 3)
			select {
			case <-quit:
				t.Stop()
				return
			case <-t.C():
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.storeTimeout)
			err := s.cfg.store.Extend(wctx, k, token, s.cfg.lease)
			cancel()
			if err != nil {
				s.storeError(ctx, method, "extend", err)
				if errors.Is(err, ErrLeaseLost) {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-stopped
	}
}

// unsaved holds outcomes whose store write failed, bounded, until they are
// written or their TTL ends. Every keyed request looks here first, and
// almost always finds nothing: size, the length of m written under mu,
// lets that common case skip the lock and the clock.
type unsaved struct {
	size atomic.Int64
	mu   sync.RWMutex
	m    map[Key]unsavedOutcome
}

type unsavedOutcome struct {
	token   string
	fp      Fingerprint
	o       *Outcome
	expires time.Time
}

// maxUnsaved bounds the outcomes kept while the store cannot be written.
const maxUnsaved = 10_000

// put keeps k's outcome until expires. A full map first drops the
// outcomes that expired by now: nothing else removes one that no retry
// came back for.
func (u *unsaved) put(k Key, token string, fp Fingerprint, o *Outcome, now, expires time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[Key]unsavedOutcome{}
	}
	if len(u.m) >= maxUnsaved {
		for key, e := range u.m {
			if !now.Before(e.expires) {
				delete(u.m, key)
			}
		}
	}
	if len(u.m) < maxUnsaved {
		u.m[k] = unsavedOutcome{token: token, fp: fp, o: o, expires: expires}
	}
	u.size.Store(int64(len(u.m)))
}

// get returns the unsaved outcome of k for a request with fingerprint fp,
// if it has not expired by clk's time.
func (u *unsaved) get(k Key, fp Fingerprint, clk clock.Clock) (*Outcome, bool) {
	if u.size.Load() == 0 {
		return nil, false
	}
	now := clk.Now()
	u.mu.RLock()
	defer u.mu.RUnlock()
	e, ok := u.m[k]
	if !ok || e.fp != fp || !now.Before(e.expires) {
		return nil, false
	}
	return e.o, true
}

// save tries the store write of k's unsaved outcome again, and forgets it
// once written (or replaced by another run's).
func (u *unsaved) save(ctx context.Context, s *Server, method string, k Key, fp Fingerprint, o *Outcome) {
	u.mu.Lock()
	e, ok := u.m[k]
	u.mu.Unlock()
	if !ok {
		return
	}
	if !s.cfg.Clock.Now().Before(e.expires) {
		u.forget(k)
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.storeTimeout)
	defer cancel()
	err := s.cfg.store.Complete(wctx, k, e.token, fp, o, e.expires.Sub(s.cfg.Clock.Now()))
	if err == nil || errors.Is(err, ErrLeaseLost) {
		u.forget(k)
		return
	}
	s.storeError(ctx, method, "complete", err)
}

func (u *unsaved) forget(k Key) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, k)
	u.size.Store(int64(len(u.m)))
}
