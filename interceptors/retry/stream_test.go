package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// readAll reads a client stream's requests on the server.
func readAll(ss grpc.ServerStream) ([]string, error) {
	var got []string
	for {
		m := new(pb.PingRequest)
		if err := ss.RecvMsg(m); err != nil {
			if err == io.EOF {
				return got, nil
			}
			return got, err
		}
		got = append(got, m.GetPayload())
	}
}

func send(ss grpc.ServerStream, payloads ...string) error {
	for _, p := range payloads {
		if err := ss.SendMsg(&pb.PingResponse{Payload: p}); err != nil {
			return err
		}
	}
	return nil
}

// TestServerStream: Watch is retried while nothing reached the caller, and
// not once a message did.
func TestServerStream(t *testing.T) {
	t.Run("uncommitted", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			if c.n == 1 {
				return fail(codes.Unavailable)
			}
			return send(c.stream, c.req.GetPayload()+"1", c.req.GetPayload()+"2", c.req.GetPayload()+"3")
		}
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{Payload: "w"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := recvAll(s)
		if err != nil || !slices.Equal(got, []string{"w1", "w2", "w3"}) {
			t.Fatalf("got %q, %v", got, err)
		}
		if e.b.count(mWatch) != 2 || !slices.Equal(e.b.attemptMD(), []string{"", "2"}) {
			t.Errorf("attempts = %d, metadata %q", e.b.count(mWatch), e.b.attemptMD())
		}
		if ends := e.obs.of(observe.AttemptEnd); len(ends) != 2 || ends[1].Err != nil {
			t.Errorf("attempt ends = %+v", ends)
		}
	})
	t.Run("committed", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			if err := send(c.stream, "first"); err != nil {
				return err
			}
			return fail(codes.Unavailable)
		}
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := recvAll(s)
		if status.Code(err) != codes.Unavailable || !slices.Equal(got, []string{"first"}) {
			t.Fatalf("got %q, %v", got, err)
		}
		if e.b.count(mWatch) != 1 {
			t.Errorf("attempts = %d", e.b.count(mWatch))
		}
		if got := e.obs.stopReasons(); !slices.Equal(got, []string{"committed"}) {
			t.Errorf("stop reasons = %q", got)
		}
	})
	t.Run("header commits", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		release := make(chan struct{})
		e.b.stream = func(c *serverCall) error {
			if err := c.stream.SendHeader(metadata.Pairs("attempt", fmt.Sprint(c.n))); err != nil {
				return err
			}
			<-release
			return fail(codes.Unavailable)
		}
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.Header()
		close(release)
		if err != nil || !slices.Equal(h.Get("attempt"), []string{"1"}) {
			t.Fatalf("header %v, %v", h, err)
		}
		if _, err := recvAll(s); status.Code(err) != codes.Unavailable || e.b.count(mWatch) != 1 {
			t.Fatalf("err %v after %d attempts", err, e.b.count(mWatch))
		}
	})
	t.Run("header of a retried attempt", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			if c.n == 1 {
				return fail(codes.Unavailable) // trailers only, no header
			}
			if err := c.stream.SendHeader(metadata.Pairs("attempt", fmt.Sprint(c.n))); err != nil {
				return err
			}
			return send(c.stream, "a")
		}
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.Header()
		if err != nil || !slices.Equal(h.Get("attempt"), []string{"2"}) {
			t.Fatalf("header %v, %v", h, err)
		}
		if got, err := recvAll(s); err != nil || !slices.Equal(got, []string{"a"}) {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("non-retryable code", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			_ = grpc.SetTrailer(c.ctx, metadata.Pairs("why", "bad"))
			return fail(codes.InvalidArgument)
		}
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := recvAll(s); status.Code(err) != codes.InvalidArgument || e.b.count(mWatch) != 1 {
			t.Fatalf("err %v after %d attempts", err, e.b.count(mWatch))
		}
		if got := s.Trailer().Get("why"); !slices.Equal(got, []string{"bad"}) {
			t.Errorf("trailer = %v", got)
		}
	})
}

func openUpload(t *testing.T, e *env, opts ...grpc.CallOption) grpc.ClientStream {
	t.Helper()
	s, err := e.cc.NewStream(within(t, 10*time.Second), uploadDesc, mUpload, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendAll(s grpc.ClientStream, payloads ...string) error {
	for _, p := range payloads {
		if err := s.SendMsg(&pb.PingRequest{Payload: p}); err != nil {
			return err
		}
	}
	return s.CloseSend()
}

// TestClientStream: Upload replays every message, in order, on a new
// attempt while no response reached the caller.
func TestClientStream(t *testing.T) {
	payloads := []string{"a", "b", "c", "d"}
	t.Run("uncommitted, failure after reading", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		var seen [][]string
		e.b.stream = func(c *serverCall) error {
			got, err := readAll(c.stream)
			if err != nil {
				return err
			}
			seen = append(seen, got)
			if c.n == 1 {
				return fail(codes.Unavailable)
			}
			return send(c.stream, strings.Join(got, ""))
		}
		s := openUpload(t, e)
		if err := sendAll(s, payloads...); err != nil {
			t.Fatal(err)
		}
		var out pb.PingResponse
		if err := s.RecvMsg(&out); err != nil || out.GetPayload() != "abcd" {
			t.Fatalf("got %v, %v", out.GetPayload(), err)
		}
		if len(seen) != 2 || !slices.Equal(seen[0], payloads) || !slices.Equal(seen[1], payloads) {
			t.Errorf("server saw %q", seen)
		}
	})
	t.Run("uncommitted, failure before reading", func(t *testing.T) {
		// The first attempt fails at once: the client's sends find it
		// ended (or its receive does); either way all messages arrive on
		// the second attempt and no send reports an error.
		e := newEnv(t, envOpts{})
		var second []string
		e.b.stream = func(c *serverCall) error {
			if c.n == 1 {
				return fail(codes.Unavailable)
			}
			got, err := readAll(c.stream)
			second = got
			if err != nil {
				return err
			}
			return send(c.stream, fmt.Sprint(len(got)))
		}
		s := openUpload(t, e)
		var many []string
		for i := range 200 {
			many = append(many, fmt.Sprintf("m%03d-%s", i, strings.Repeat("x", 200)))
		}
		if err := sendAll(s, many...); err != nil {
			t.Fatalf("send: %v", err)
		}
		var out pb.PingResponse
		if err := s.RecvMsg(&out); err != nil || out.GetPayload() != "200" {
			t.Fatalf("got %v, %v", out.GetPayload(), err)
		}
		if !slices.Equal(second, many) {
			t.Errorf("second attempt saw %d messages", len(second))
		}
	})
	t.Run("committed by header", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			if err := c.stream.SendHeader(metadata.Pairs("k", "v")); err != nil {
				return err
			}
			if _, err := readAll(c.stream); err != nil {
				return err
			}
			return fail(codes.Unavailable)
		}
		s := openUpload(t, e)
		if _, err := s.Header(); err != nil {
			t.Fatal(err)
		}
		if err := sendAll(s, payloads...); err != nil {
			t.Fatal(err)
		}
		if err := s.RecvMsg(new(pb.PingResponse)); status.Code(err) != codes.Unavailable || e.b.count(mUpload) != 1 {
			t.Fatalf("err %v after %d attempts", err, e.b.count(mUpload))
		}
	})
	t.Run("buffer overflow", func(t *testing.T) {
		e := newEnv(t, envOpts{retry: []retry.Option{retry.WithReplayBuffer(10)}})
		e.b.stream = func(c *serverCall) error {
			if _, err := readAll(c.stream); err != nil {
				return err
			}
			return fail(codes.Unavailable)
		}
		s := openUpload(t, e)
		// Each message is 3 bytes on the wire: the fourth overflows.
		if err := sendAll(s, payloads...); err != nil {
			t.Fatal(err)
		}
		if err := s.RecvMsg(new(pb.PingResponse)); status.Code(err) != codes.Unavailable || e.b.count(mUpload) != 1 {
			t.Fatalf("err %v after %d attempts", err, e.b.count(mUpload))
		}
		if got := e.obs.stopReasons(); len(got) == 0 || got[0] != "buffer" {
			t.Errorf("stop reasons = %q", got)
		}
	})
	t.Run("within the buffer", func(t *testing.T) {
		e := newEnv(t, envOpts{retry: []retry.Option{retry.WithReplayBuffer(12)}})
		e.b.stream = func(c *serverCall) error {
			got, err := readAll(c.stream)
			if err != nil {
				return err
			}
			if c.n == 1 {
				return fail(codes.Unavailable)
			}
			return send(c.stream, strings.Join(got, ""))
		}
		s := openUpload(t, e)
		if err := sendAll(s, payloads...); err != nil {
			t.Fatal(err)
		}
		var out pb.PingResponse
		if err := s.RecvMsg(&out); err != nil || out.GetPayload() != "abcd" || e.b.count(mUpload) != 2 {
			t.Fatalf("got %q, %v after %d attempts", out.GetPayload(), err, e.b.count(mUpload))
		}
	})
}

// TestBidiStream: Chat is retried until the first response reaches the
// caller, with the messages sent so far replayed; after that, no more.
func TestBidiStream(t *testing.T) {
	echo := func(c *serverCall, failAfterReading, failAfterEcho int) error {
		for i := 1; ; i++ {
			m := new(pb.PingRequest)
			if err := c.stream.RecvMsg(m); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			if i == failAfterReading {
				return fail(codes.Unavailable)
			}
			if err := send(c.stream, fmt.Sprintf("%s@%d", m.GetPayload(), c.n)); err != nil {
				return err
			}
			if i == failAfterEcho {
				return fail(codes.Unavailable)
			}
		}
	}
	t.Run("uncommitted", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			if c.n == 1 {
				return echo(c, 1, 0)
			}
			return echo(c, 0, 0)
		}
		s, err := e.cc.NewStream(within(t, 10*time.Second), chatDesc, mChat)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range []string{"hello", "again"} {
			if err := s.SendMsg(&pb.PingRequest{Payload: p}); err != nil {
				t.Fatal(err)
			}
			var out pb.PingResponse
			if err := s.RecvMsg(&out); err != nil {
				t.Fatal(err)
			}
			got = append(got, out.GetPayload())
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := recvAll(s); err != nil {
			t.Fatal(err)
		}
		if want := []string{"hello@2", "again@2"}; !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("committed", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error { return echo(c, 0, 1) }
		s, err := e.cc.NewStream(within(t, 10*time.Second), chatDesc, mChat)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(&pb.PingRequest{Payload: "hi"}); err != nil {
			t.Fatal(err)
		}
		got, err := recvAll(s)
		if status.Code(err) != codes.Unavailable || !slices.Equal(got, []string{"hi@1"}) || e.b.count(mChat) != 1 {
			t.Fatalf("got %q, %v after %d attempts", got, err, e.b.count(mChat))
		}
	})
	t.Run("concurrent send and receive", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.b.stream = func(c *serverCall) error {
			if c.n == 1 {
				// Reads three messages without answering, then fails.
				for range 3 {
					if err := c.stream.RecvMsg(new(pb.PingRequest)); err != nil {
						return err
					}
				}
				return fail(codes.Unavailable)
			}
			return echo(c, 0, 0)
		}
		s, err := e.cc.NewStream(within(t, 10*time.Second), chatDesc, mChat)
		if err != nil {
			t.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() {
			for i := range 20 {
				if err := s.SendMsg(&pb.PingRequest{Payload: fmt.Sprint(i)}); err != nil {
					sent <- err
					return
				}
			}
			sent <- s.CloseSend()
		}()
		got, err := recvAll(s)
		if serr := <-sent; serr != nil || err != nil {
			t.Fatalf("send %v, recv %v", serr, err)
		}
		var want []string
		for i := range 20 {
			want = append(want, fmt.Sprintf("%d@2", i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %q", got)
		}
	})
}

// TestStreamOpenRetried: a failure to open the stream is retried.
func TestStreamOpenRetried(t *testing.T) {
	var opens int
	failAll := false
	flaky := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		opens++
		if opens == 1 || failAll {
			return nil, fail(codes.Unavailable)
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	e := newEnv(t, envOpts{stream: []grpc.StreamClientInterceptor{flaky}})
	e.b.stream = func(c *serverCall) error { return send(c.stream, "ok") }
	s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := recvAll(s); err != nil || !slices.Equal(got, []string{"ok"}) || opens != 2 {
		t.Fatalf("got %q, %v after %d opens", got, err, opens)
	}
	// Exhausted: the open error is returned.
	failAll, opens = true, 0
	_, err = pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{})
	if status.Code(err) != codes.Unavailable || opens != 4 { // TunedService: 4 attempts
		t.Fatalf("err = %v after %d opens", err, opens)
	}
}

// TestStreamNotRetryable: a stream of a method that is not safe passes
// through untouched.
func TestStreamNotRetryable(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.b.stream = func(c *serverCall) error { return fail(codes.Unavailable) }
	s, err := e.cc.NewStream(within(t, 10*time.Second), uploadDesc, mUpload, retry.Disable())
	if err != nil {
		t.Fatal(err)
	}
	if err := sendAll(s, "a"); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(pb.PingResponse)); status.Code(err) != codes.Unavailable || e.b.count(mUpload) != 1 {
		t.Fatalf("err %v after %d attempts", err, e.b.count(mUpload))
	}
}

// TestStreamCancelDuringBackoff: cancelling while a stream waits to retry
// ends it with CANCELED and leaves nothing running.
func TestStreamCancelDuringBackoff(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.rand.set(0.5)
	e.b.stream = func(c *serverCall) error { return fail(codes.Unavailable) }
	ctx, cancel := context.WithCancel(within(t, 10*time.Second))
	s, err := pb.NewTunedServiceClient(e.cc).Watch(ctx, &pb.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := recvAll(s)
		done <- err
	}()
	e.clock.BlockUntil(1)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v", err)
	}
}

// TestStreamAttemptTimeout: a stream's per-attempt timeout applies until
// it is committed.
func TestStreamAttemptTimeout(t *testing.T) {
	e := newEnv(t, envOpts{})
	arrived := make(chan int, 2)
	e.b.stream = func(c *serverCall) error {
		arrived <- c.n
		if c.n == 1 {
			<-c.ctx.Done()
			return c.ctx.Err()
		}
		return send(c.stream, "late", "later")
	}
	s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{}, retry.WithAttemptTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	e.clock.BlockUntil(1)
	e.clock.Advance(time.Second)
	var out pb.PingResponse
	if err := s.RecvMsg(&out); err != nil || out.GetPayload() != "late" {
		t.Fatalf("got %q, %v", out.GetPayload(), err)
	}
	// Committed: the second attempt's timer is disarmed.
	if n := e.clock.Timers(); n != 0 {
		t.Errorf("%d timers left after commit", n)
	}
	if got, err := recvAll(s); err != nil || !slices.Equal(got, []string{"later"}) {
		t.Fatalf("got %q, %v", got, err)
	}
}

// fakeStream is a scripted first attempt: it accepts okSends messages,
// then reports io.EOF on send (as grpc-go does once the server ended the
// stream); RecvMsg returns the queued responses, then err.
type fakeStream struct {
	grpc.ClientStream
	ctx       context.Context
	okSends   int
	sent      int
	responses []*pb.PingResponse
	err       error
	sendErr   error // instead of io.EOF
}

func (f *fakeStream) Context() context.Context     { return f.ctx }
func (f *fakeStream) Header() (metadata.MD, error) { return nil, nil }
func (f *fakeStream) Trailer() metadata.MD         { return nil }
func (f *fakeStream) CloseSend() error             { return nil }
func (f *fakeStream) SendMsg(any) error {
	f.sent++
	if f.sent > f.okSends {
		if f.sendErr != nil {
			return f.sendErr
		}
		return io.EOF
	}
	return nil
}
func (f *fakeStream) RecvMsg(m any) error {
	if len(f.responses) == 0 {
		return f.err
	}
	b, err := proto.Marshal(f.responses[0])
	if err != nil {
		return err
	}
	f.responses = f.responses[1:]
	return proto.Unmarshal(b, m.(proto.Message))
}

// scripted replaces the attempts for which fakes has an entry.
func scripted(fakes map[int]*fakeStream) grpc.StreamClientInterceptor {
	n := 0
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		n++
		if f, ok := fakes[n]; ok {
			f.ctx = ctx
			return f, nil
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// TestSendFindsAttemptEnded: a send that finds the attempt ended learns
// its status, retries, and replays every message, this one included; the
// caller's sends all succeed.
func TestSendFindsAttemptEnded(t *testing.T) {
	fakes := map[int]*fakeStream{
		1: {okSends: 2, err: fail(codes.Unavailable)},
		2: {okSends: 1, err: fail(codes.Unavailable)}, // ends during the replay
	}
	e := newEnv(t, envOpts{stream: []grpc.StreamClientInterceptor{scripted(fakes)}})
	var seen []string
	e.b.stream = func(c *serverCall) error {
		got, err := readAll(c.stream)
		if err != nil {
			return err
		}
		seen = got
		return send(c.stream, strings.Join(got, ""))
	}
	s := openUpload(t, e)
	if err := sendAll(s, "a", "b", "c", "d"); err != nil {
		t.Fatalf("send: %v", err)
	}
	var out pb.PingResponse
	if err := s.RecvMsg(&out); err != nil || out.GetPayload() != "abcd" {
		t.Fatalf("got %q, %v", out.GetPayload(), err)
	}
	if !slices.Equal(seen, []string{"a", "b", "c", "d"}) || e.b.count(mUpload) != 1 {
		t.Errorf("server saw %q in %d attempts", seen, e.b.count(mUpload))
	}
	if s.Context() == nil {
		t.Error("nil context")
	}
	if got := len(e.obs.of(observe.AttemptStart)); got != 3 {
		t.Errorf("%d attempts started, want 3", got)
	}
}

// TestSendFindsResponse: when the ended attempt had answered first, the
// stream commits to it: the send reports io.EOF as gRPC would, and the
// caller receives the answer, then the status.
func TestSendFindsResponse(t *testing.T) {
	fakes := map[int]*fakeStream{
		1: {okSends: 1, responses: []*pb.PingResponse{{Payload: "early"}}, err: fail(codes.Unavailable)},
	}
	e := newEnv(t, envOpts{stream: []grpc.StreamClientInterceptor{scripted(fakes)}})
	s, err := e.cc.NewStream(within(t, 10*time.Second), chatDesc, mChat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&pb.PingRequest{Payload: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&pb.PingRequest{Payload: "2"}); err != io.EOF {
		t.Fatalf("second send: %v, want io.EOF", err)
	}
	if err := s.SendMsg(&pb.PingRequest{Payload: "3"}); err != io.EOF {
		t.Fatalf("third send: %v, want io.EOF", err)
	}
	got, err := recvAll(s)
	if status.Code(err) != codes.Unavailable || !slices.Equal(got, []string{"early"}) {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestSendFindsFatalStatus: a non-retryable status ends the stream; sends
// report io.EOF and RecvMsg the status.
func TestSendFindsFatalStatus(t *testing.T) {
	fakes := map[int]*fakeStream{1: {okSends: 0, err: fail(codes.PermissionDenied)}}
	e := newEnv(t, envOpts{stream: []grpc.StreamClientInterceptor{scripted(fakes)}})
	s := openUpload(t, e)
	if err := s.SendMsg(&pb.PingRequest{Payload: "a"}); err != io.EOF {
		t.Fatalf("send: %v", err)
	}
	if err := s.RecvMsg(new(pb.PingResponse)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("recv: %v", err)
	}
	if err := s.RecvMsg(new(pb.PingResponse)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second recv: %v", err)
	}
}

// TestReplayLocalError: a send that fails in the client while replaying
// ends the stream with that error; it is not retried.
func TestReplayLocalError(t *testing.T) {
	tooLarge := status.Error(codes.ResourceExhausted, "trying to send message larger than max")
	fakes := map[int]*fakeStream{
		1: {okSends: 1, err: fail(codes.Unavailable)},
		2: {okSends: 0, sendErr: tooLarge, err: tooLarge},
	}
	e := newEnv(t, envOpts{stream: []grpc.StreamClientInterceptor{scripted(fakes)}})
	s := openUpload(t, e)
	if err := s.SendMsg(&pb.PingRequest{Payload: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&pb.PingRequest{Payload: "b"}); err != io.EOF {
		t.Fatalf("send: %v", err)
	}
	if err := s.RecvMsg(new(pb.PingResponse)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("recv: %v", err)
	}
	if got := len(e.obs.of(observe.AttemptStart)); got != 2 {
		t.Errorf("%d attempts, want 2", got)
	}
}

// TestReplayAsSent: an application that reuses one request object for
// every SendMsg (which gRPC allows once SendMsg returns) gets its messages
// replayed as they were sent, not the object's last value.
func TestReplayAsSent(t *testing.T) {
	e := newEnv(t, envOpts{})
	var seen [][]string
	e.b.stream = func(c *serverCall) error {
		got, err := readAll(c.stream)
		if err != nil {
			return err
		}
		seen = append(seen, got)
		if c.n == 1 {
			return fail(codes.Unavailable)
		}
		return send(c.stream, strings.Join(got, ""))
	}
	s := openUpload(t, e)
	req := new(pb.PingRequest)
	for _, p := range []string{"a", "b", "c"} {
		req.Payload = p
		if err := s.SendMsg(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var out pb.PingResponse
	if err := s.RecvMsg(&out); err != nil || out.GetPayload() != "abc" {
		t.Fatalf("got %q, %v; want the messages as sent, abc", out.GetPayload(), err)
	}
	if len(seen) != 2 || !slices.Equal(seen[1], []string{"a", "b", "c"}) {
		t.Errorf("server saw %q", seen)
	}
}

// TestReplayBufferOverflowSaysSo: a stream whose messages outgrew its
// replay buffer is not retried, and its error says why, keeping the
// server's code.
func TestReplayBufferOverflowSaysSo(t *testing.T) {
	e := newEnv(t, envOpts{retry: []retry.Option{retry.WithReplayBuffer(8)}})
	e.b.stream = func(c *serverCall) error {
		if _, err := readAll(c.stream); err != nil {
			return err
		}
		return fail(codes.Unavailable)
	}
	s := openUpload(t, e)
	if err := sendAll(s, "0123456789", "more"); err != nil {
		t.Fatal(err)
	}
	var out pb.PingResponse
	err := s.RecvMsg(&out)
	var se *retry.StopError
	if status.Code(err) != codes.Unavailable || !errors.As(err, &se) || se.Reason != "buffer" ||
		!strings.Contains(err.Error(), "replay buffer") || errorInfo(err).GetReason() != retry.ReasonReplayBuffer {
		t.Fatalf("err = %v; want UNAVAILABLE saying the replay buffer overflowed", err)
	}
	if e.b.count(mUpload) != 1 {
		t.Errorf("%d attempts, want 1", e.b.count(mUpload))
	}
}
