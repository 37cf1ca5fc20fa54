package retry

import (
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/internal/chain"
)

func (ic *Interceptor) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, next chain.StreamNext, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c := call{ic: ic, ctx: ctx, method: method}
	if err := c.open(cc, &next.State, opts, ic.clock.Now(), nil); err != nil {
		return nil, err
	}
	retry := c.max > 1
	if !retry && ic.obs == nil {
		return next.NewStream(ctx, desc, cc, method, opts...)
	}
	s := &retryStream{c: c, desc: desc, cc: cc, next: next, opts: opts, limit: ic.replayBuffer}
	s.cond.L = &s.mu
	a, err := s.newAttempt(0, "")
	s.cur = a
	if err != nil {
		if !retry {
			s.attemptDone(a, err)
			return nil, err
		}
		s.mu.Lock()
		err = s.recoverLocked(a, err)
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if !retry {
		s.commitLocked("")
	}
	return s, nil
}

// streamAttempt is one attempt of a stream.
type streamAttempt struct {
	n     int
	cs    grpc.ClientStream // nil when opening it failed
	ctx   context.Context
	timer attemptTimer
	start time.Time
	done  atomic.Bool // ended and reported
}

// retryStream is a client stream that can be retried while uncommitted:
// before any response header or message reached the caller, and while the
// request messages sent so far fit the replay buffer. A new attempt
// replays those messages (and CloseSend) in order; once committed, every
// operation goes straight to the current attempt.
//
// Concurrency follows grpc.ClientStream: one goroutine may send while
// another receives. Uncommitted state is guarded by mu; at most one
// goroutine at a time is inside the current attempt's RecvMsg (busy), and
// only that goroutine replaces a failed attempt.
type retryStream struct {
	c     call
	desc  *grpc.StreamDesc
	cc    *grpc.ClientConn
	next  chain.StreamNext
	opts  []grpc.CallOption
	limit int

	committed atomic.Bool // cur is final; read without mu once set
	special   atomic.Bool // pending or final is set

	mu      sync.Mutex
	cond    sync.Cond
	cur     *streamAttempt
	buf     []any // request messages sent while uncommitted
	bufSize int
	closed  bool  // CloseSend was called
	busy    bool  // a goroutine is inside cur.cs.RecvMsg
	final   error // what RecvMsg returns once retries ended in failure
	pending []byte
	// overflowed: the stream committed because its messages outgrew the
	// replay buffer, so a retryable failure is not retried; its error says
	// so.
	overflowed bool

	// first and inline save allocations on the common path: the first
	// attempt, and a buffer for one request message.
	first  streamAttempt
	inline [1]any
}

// newAttempt opens attempt s.c.n+1 after waiting wait.
func (s *retryStream) newAttempt(wait time.Duration, reason string) (*streamAttempt, error) {
	c := &s.c
	now := c.ic.clock.Now()
	more := c.begin(now)
	var a *streamAttempt
	if c.n == 1 {
		a = &s.first
		a.n = 1
	} else {
		a = &streamAttempt{n: c.n}
	}
	next := s.next
	next.MayRetry = more
	ctx := c.attemptContext(false, wait, reason)
	if c.max > 1 {
		ctx = a.timer.start(c, ctx, now, true)
	}
	a.ctx = ctx
	if c.ic.obs != nil {
		a.start = c.attemptStart(ctx, a.n, false)
	}
	cs, err := next.NewStream(ctx, s.desc, s.cc, c.method, s.opts...)
	a.cs = cs
	return a, err
}

// attemptDone releases an attempt and reports its end, once. It returns
// the attempt's error, made a DEADLINE_EXCEEDED if its per-attempt timeout
// fired, and whether it did.
func (s *retryStream) attemptDone(a *streamAttempt, err error) (error, bool) {
	if !a.done.CompareAndSwap(false, true) {
		return err, false
	}
	failure := err
	if failure == io.EOF {
		failure = nil
	}
	timedOut := a.timer.finish(failure)
	if timedOut {
		err = timeoutError(err, a.n, s.c.timeout)
	}
	if s.c.ic.obs != nil {
		e := err
		if e == io.EOF {
			e = nil
		}
		s.c.attemptEnd(a.ctx, a.n, false, a.start, e)
	}
	return err, timedOut
}

// recoverLocked handles the failure of attempt a with err while
// uncommitted: it opens further attempts, replaying what was sent, until
// one is open (and returns nil), or the retries end (and returns the error
// every further RecvMsg returns). The caller holds mu; waits happen with
// it held, so that no message is sent meanwhile.
func (s *retryStream) recoverLocked(a *streamAttempt, err error) error {
	for {
		var timedOut bool
		err, timedOut = s.attemptDone(a, err)
		var trailer metadata.MD
		if a.cs != nil {
			trailer = a.cs.Trailer()
		}
		wait, reason, stop := s.c.next(err, serverPushback(trailer, err), timedOut)
		if stop == nil {
			stop = s.c.sleep(wait, reason, err)
		}
		if stop != nil {
			if a.cs != nil {
				s.cur = a // its header and trailer go with the error
			}
			s.failLocked(stop)
			return stop
		}
		na, nerr := s.newAttempt(wait, reason)
		if nerr == nil {
			nerr = s.replayLocked(na)
		}
		if nerr == nil {
			s.cur = na
			s.cond.Broadcast()
			return nil
		}
		if le, ok := nerr.(localSendError); ok {
			// The client could not send a message (too large, cannot be
			// encoded): another attempt would fail the same way.
			s.cur = na
			s.failLocked(le.err)
			return le.err
		}
		if s.committed.Load() {
			return nil // the new attempt answered while replaying
		}
		a, err = na, nerr
	}
}

// replayLocked sends the buffered messages, and CloseSend if the caller
// closed, on a new attempt.
func (s *retryStream) replayLocked(a *streamAttempt) error {
	var err error
	for _, m := range s.buf {
		if err = a.cs.SendMsg(m); err != nil {
			break
		}
	}
	if err == nil && s.closed {
		err = a.cs.CloseSend()
	}
	switch err {
	case nil:
		return nil
	case io.EOF:
		// The attempt ended while replaying; RecvMsg says how.
		return s.probe(a)
	}
	return localSendError{err}
}

// localSendError is a send that failed in the client; gRPC ends the stream
// with it.
type localSendError struct{ err error }

func (e localSendError) Error() string { return e.err.Error() }

// probe receives from an attempt that ended (a send returned io.EOF, or
// Header returned none), to learn its status. A response message that
// arrived first commits the stream to the attempt and is kept for the
// caller's next RecvMsg. The caller holds mu and no other goroutine is
// inside a.cs.RecvMsg.
func (s *retryStream) probe(a *streamAttempt) error {
	var m emptypb.Empty // keeps the message's fields as unknown fields
	return s.probed(a, &m, a.cs.RecvMsg(&m))
}

// probed settles what probing attempt a found: a response message (kept
// for the caller, committing the stream), the stream's end (io.EOF), or
// the attempt's error, which it returns for the caller to judge.
func (s *retryStream) probed(a *streamAttempt, m *emptypb.Empty, err error) error {
	switch err {
	case nil:
		s.cur = a
		b, merr := proto.Marshal(m)
		if merr != nil {
			s.failLocked(status.Error(codes.Internal, "failsoft: retry: keeping a response: "+merr.Error()))
			return nil
		}
		s.pending = b
		s.special.Store(true)
		s.commitLocked("")
		return nil
	case io.EOF:
		s.cur = a
		s.failLocked(io.EOF)
		return nil
	}
	return err
}

// commitLocked makes the current attempt final.
func (s *retryStream) commitLocked(reason string) {
	if s.committed.Load() {
		return
	}
	s.buf, s.bufSize, s.inline[0] = nil, 0, nil
	s.cur.timer.disarm()
	if reason == "" && s.final == nil {
		// A response reached the caller: a retry that got this far did
		// its call's work, and gets its budget token back.
		s.c.succeeded()
	}
	s.committed.Store(true)
	s.cond.Broadcast()
	if reason != "" && s.c.ic.obs != nil {
		s.c.event(s.c.ctx, observe.Event{Kind: observe.RetryStopped, Attempt: s.cur.n, Reason: reason})
	}
}

// failLocked ends retrying with err, which RecvMsg will return.
func (s *retryStream) failLocked(err error) {
	s.attemptDone(s.cur, err)
	s.final = err
	s.special.Store(true)
	s.commitLocked("")
}

// end releases the committed attempt when the stream ends with err, and
// returns the error for the caller: err, or a StopError saying why a
// retryable failure was not retried.
func (s *retryStream) end(err error) error {
	a := s.cur
	if a.done.Load() {
		return err
	}
	s.attemptDone(a, err)
	c := &s.c
	if err == io.EOF || c.max <= c.n || c.ctx.Err() != nil {
		return err
	}
	if _, rej := outcome.AsRejection(err); rej || !c.p.Retry.Codes.Has(outcome.Code(err)) {
		return err
	}
	if s.overflowed {
		// RetryStopped was reported when the stream committed.
		return newStopError("buffer", a.n, c.target, err, strconv.Itoa(s.limit))
	}
	if c.ic.obs != nil {
		c.event(c.ctx, observe.Event{Kind: observe.RetryStopped, Attempt: a.n, Reason: "committed", Err: err})
	}
	return err
}

func (s *retryStream) current() *streamAttempt {
	if s.committed.Load() {
		return s.cur
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Header returns the response header of the current attempt, committing
// the stream to it.
func (s *retryStream) Header() (metadata.MD, error) {
	if s.committed.Load() {
		return s.cur.cs.Header()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.committed.Load() {
			return s.cur.cs.Header()
		}
		a := s.cur
		s.mu.Unlock()
		h, err := a.cs.Header()
		s.mu.Lock()
		if s.cur != a {
			continue // replaced while waiting
		}
		if err == nil && h != nil {
			s.commitLocked("")
			return h, nil
		}
		if s.committed.Load() {
			continue
		}
		if s.busy {
			// A receiving goroutine will see the attempt's end.
			s.cond.Wait()
			continue
		}
		// The attempt ended without a header; its status says whether to
		// retry. As with grpc-go, a stream that ends here returns no header
		// and no error: RecvMsg returns the status.
		s.busy = true
		perr := s.probeUnlocked(a)
		if perr == nil {
			continue
		}
		if s.recoverLocked(a, perr) != nil {
			return nil, nil
		}
	}
}

// probeUnlocked runs probe without holding mu, marking the stream busy.
func (s *retryStream) probeUnlocked(a *streamAttempt) error {
	var m emptypb.Empty
	s.mu.Unlock()
	err := a.cs.RecvMsg(&m)
	s.mu.Lock()
	s.busy = false
	s.cond.Broadcast()
	return s.probed(a, &m, err)
}

// Trailer returns the trailer of the current attempt.
func (s *retryStream) Trailer() metadata.MD { return s.current().cs.Trailer() }

// Context returns the context of the current attempt.
func (s *retryStream) Context() context.Context { return s.current().cs.Context() }

// CloseSend closes the send direction; a later attempt replays it.
func (s *retryStream) CloseSend() error {
	if s.committed.Load() {
		return s.cur.cs.CloseSend()
	}
	s.mu.Lock()
	s.closed = true
	a := s.cur
	s.mu.Unlock()
	return a.cs.CloseSend()
}

// SendMsg sends m, keeping it for replay while the stream may be retried.
func (s *retryStream) SendMsg(m any) error {
	if s.committed.Load() {
		return s.sendCommitted(m)
	}
	s.mu.Lock()
	if s.committed.Load() {
		s.mu.Unlock()
		return s.sendCommitted(m)
	}
	pm, ok := m.(proto.Message)
	size := -1
	if ok {
		size = proto.Size(pm)
	}
	if size < 0 || s.bufSize+size > s.limit {
		// Over the replay buffer (or not a proto message): no more
		// retries.
		s.overflowed = size >= 0
		s.commitLocked("buffer")
		s.mu.Unlock()
		return s.sendCommitted(m)
	}
	if s.buf == nil {
		s.buf = s.inline[:0]
	}
	// A copy, as sent: the caller may reuse m for its next message once
	// SendMsg returns, and a replay must send what was sent.
	s.buf = append(s.buf, proto.Clone(pm))
	s.bufSize += size
	a := s.cur
	s.mu.Unlock()
	err := a.cs.SendMsg(m)
	if err == nil {
		return nil
	}
	if err != io.EOF {
		// A local error (grpc-go ends the stream with it); not retried.
		s.mu.Lock()
		if s.cur == a {
			s.commitLocked("")
		}
		s.mu.Unlock()
		return err
	}
	return s.sendFailed(a)
}

func (s *retryStream) sendCommitted(m any) error {
	if s.special.Load() {
		s.mu.Lock()
		final := s.final
		s.mu.Unlock()
		if final != nil {
			return io.EOF
		}
	}
	return s.cur.cs.SendMsg(m)
}

// sendFailed handles a send that found attempt a ended. It returns nil
// when a new attempt has replayed every message, including this one, and
// io.EOF when the stream ended (RecvMsg then returns its status).
func (s *retryStream) sendFailed(a *streamAttempt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.cur != a {
			if s.final != nil {
				return io.EOF
			}
			return nil // the new attempt replayed the message
		}
		if s.committed.Load() {
			return io.EOF
		}
		if s.busy {
			s.cond.Wait()
			continue
		}
		s.busy = true
		perr := s.probeUnlocked(a)
		if perr == nil {
			return io.EOF // committed to a, which answered
		}
		if s.recoverLocked(a, perr) != nil {
			return io.EOF
		}
	}
}

// RecvMsg receives the next response message. While uncommitted, a
// retryable failure opens a new attempt, replays the request messages and
// receives from it; the caller never sees a message twice.
func (s *retryStream) RecvMsg(m any) error {
	if s.committed.Load() {
		return s.recvCommitted(m)
	}
	s.mu.Lock()
	for {
		if s.committed.Load() {
			s.mu.Unlock()
			return s.recvCommitted(m)
		}
		if s.busy {
			s.cond.Wait()
			continue
		}
		a := s.cur
		s.busy = true
		s.mu.Unlock()
		err := a.cs.RecvMsg(m)
		s.mu.Lock()
		s.busy = false
		s.cond.Broadcast()
		if s.cur != a {
			if err == nil {
				// Cannot happen: only the busy goroutine replaces a.
				s.mu.Unlock()
				return nil
			}
			continue
		}
		switch err {
		case nil:
			s.commitLocked("")
			s.mu.Unlock()
			return nil
		case io.EOF:
			s.commitLocked("")
			s.mu.Unlock()
			return s.end(io.EOF)
		}
		if ferr := s.recoverLocked(a, err); ferr != nil {
			s.mu.Unlock()
			return ferr
		}
	}
}

func (s *retryStream) recvCommitted(m any) error {
	if s.special.Load() {
		s.mu.Lock()
		if p := s.pending; p != nil {
			s.pending = nil
			s.mu.Unlock()
			pm, ok := m.(proto.Message)
			if !ok {
				return status.Errorf(codes.Internal, "failsoft: retry: cannot decode a held response into %T", m)
			}
			if err := proto.Unmarshal(p, pm); err != nil {
				return status.Errorf(codes.Internal, "failsoft: retry: decoding a held response: %v", err)
			}
			return nil
		}
		final := s.final
		s.mu.Unlock()
		if final != nil {
			return final
		}
	}
	err := s.cur.cs.RecvMsg(m)
	if err != nil {
		return s.end(err)
	}
	return nil
}
