package retry_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/retry"
	pb "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// classes records how a layer between the retry layer and the pushback
// interceptor (where the breaker and the throttle sit) classifies each
// attempt.
type classes struct {
	mu  sync.Mutex
	got []outcome.Class
}

func (c *classes) add(err error) {
	c.mu.Lock()
	c.got = append(c.got, outcome.Default.Classify(err))
	c.mu.Unlock()
}

func (c *classes) list() []outcome.Class {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func (c *classes) unary() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		c.add(err)
		return err
	}
}

func (c *classes) stream() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			c.add(err)
			return nil, err
		}
		return &classifiedStream{ClientStream: s, c: c}, nil
	}
}

type classifiedStream struct {
	grpc.ClientStream
	c *classes
}

func (s *classifiedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == io.EOF {
		s.c.add(nil)
	} else if err != nil {
		s.c.add(err)
	}
	return err
}

func pushbackEnv(t *testing.T) (*env, *classes) {
	c := &classes{}
	e := newEnv(t, envOpts{
		unary:  []grpc.UnaryClientInterceptor{c.unary(), retry.UnaryPushbackInterceptor()},
		stream: []grpc.StreamClientInterceptor{c.stream(), retry.StreamPushbackInterceptor()},
	})
	return e, c
}

// TestPushbackMarksOverload: an attempt answered with pushback is
// overload to the layers inside the retry layer, whatever its code; the
// retry layer still reads the pushback, and the caller sees the status
// the server sent.
func TestPushbackMarksOverload(t *testing.T) {
	const (
		S = outcome.Success
		O = outcome.Overload
		F = outcome.Failure
	)
	tests := []struct {
		name    string
		method  string
		trailer []string
		err     error
		classes []outcome.Class // of each attempt, as the inner layers see them
		retried string          // the Backoff reason; "" when not retried
	}{
		{"trailer", mIdempotent, []string{"0"}, fail(codes.Unavailable), []outcome.Class{O, S}, "pushback"},
		{"negative trailer", mIdempotent, []string{"-1"}, fail(codes.Unavailable), []outcome.Class{O}, ""},
		{"malformed trailer", mIdempotent, []string{"soon"}, fail(codes.Unavailable), []outcome.Class{O}, ""},
		{"repeated trailer", mIdempotent, []string{"0", "0"}, fail(codes.Unavailable), []outcome.Class{O}, ""},
		{"retry info", mIdempotent, nil, retryInfo(durationpb.New(0)), []outcome.Class{O, S}, "pushback"},
		{"negative retry info", mIdempotent, nil, retryInfo(durationpb.New(-time.Second)), []outcome.Class{O}, ""},
		{"non-retryable code", mIdempotent, []string{"0"}, fail(codes.Internal), []outcome.Class{O}, ""},
		{"non-retryable method", mPlain, []string{"0"}, fail(codes.Unavailable), []outcome.Class{O}, ""},
		{"no pushback", mIdempotent, nil, fail(codes.Unavailable), []outcome.Class{F, S}, "policy"},
		{"no pushback, non-retryable method", mPlain, nil, fail(codes.Unavailable), []outcome.Class{F}, ""},
		{"success", mIdempotent, []string{"0"}, nil, []outcome.Class{S}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, c := pushbackEnv(t)
			pushbackServer(e, tt.trailer, tt.err)
			var trailer metadata.MD
			_, err := e.invoke(within(t, 10*time.Second), tt.method, "x", grpc.Trailer(&trailer))
			if got := c.list(); !slices.Equal(got, tt.classes) {
				t.Errorf("inner layers saw %v, want %v", got, tt.classes)
			}
			var reasons []string
			for _, b := range e.obs.of(observe.Backoff) {
				reasons = append(reasons, b.Reason)
			}
			if want := []string{tt.retried}; tt.retried != "" && !slices.Equal(reasons, want) || tt.retried == "" && len(reasons) > 0 {
				t.Errorf("backoffs %q, want %q", reasons, tt.retried)
			}
			if len(tt.classes) > 1 || tt.err == nil {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				return
			}
			// The caller sees the server's status and trailer unchanged.
			st, ok := status.FromError(err)
			want := status.Convert(tt.err)
			if !ok || st.Code() != want.Code() || st.Message() != want.Message() || len(st.Details()) != len(want.Details()) {
				t.Errorf("caller got %v, want %v", err, tt.err)
			}
			if !slices.Equal(trailer.Get(retry.PushbackMetadata), tt.trailer) {
				t.Errorf("caller's trailer = %v, want pushback %q", trailer, tt.trailer)
			}
			// The final error is overload to the layers outside too
			// (fallback, telemetry call span) exactly when pushback came.
			wantClass := tt.classes[len(tt.classes)-1]
			if got := outcome.Default.Classify(err); got != wantClass {
				t.Errorf("caller's error classified %v, want %v", got, wantClass)
			}
		})
	}
}

// TestPushbackMarksStreams: a stream whose attempt ends with pushback is
// overload to the inner layers; the retry layer retries it and the caller
// gets the messages of the retry.
func TestPushbackMarksStreams(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trailer string
		err     error
		want    []outcome.Class
	}{
		{"trailer", "0", fail(codes.Unavailable), []outcome.Class{outcome.Overload, outcome.Success}},
		{"retry info", "", retryInfo(durationpb.New(0)), []outcome.Class{outcome.Overload, outcome.Success}},
		{"none", "", fail(codes.Unavailable), []outcome.Class{outcome.Failure, outcome.Success}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, c := pushbackEnv(t)
			e.b.stream = func(sc *serverCall) error {
				if sc.n == 1 {
					if tc.trailer != "" {
						sc.stream.SetTrailer(metadata.Pairs(retry.PushbackMetadata, tc.trailer))
					}
					return tc.err
				}
				return send(sc.stream, "w1", "w2")
			}
			s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{Payload: "w"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := recvAll(s)
			if err != nil || !slices.Equal(got, []string{"w1", "w2"}) {
				t.Fatalf("got %q, %v", got, err)
			}
			if cl := c.list(); !slices.Equal(cl, tc.want) {
				t.Errorf("inner layers saw %v, want %v", cl, tc.want)
			}
		})
	}
	t.Run("not retried", func(t *testing.T) {
		e, c := pushbackEnv(t)
		e.b.stream = func(sc *serverCall) error {
			sc.stream.SetTrailer(metadata.Pairs(retry.PushbackMetadata, "-1"))
			return fail(codes.Unavailable)
		}
		s, err := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{Payload: "w"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = recvAll(s)
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "injected Unavailable" {
			t.Errorf("caller got %v", err)
		}
		if outcome.Default.Classify(err) != outcome.Overload {
			t.Errorf("caller's error is not overload")
		}
		if got := s.Trailer().Get(retry.PushbackMetadata); !slices.Equal(got, []string{"-1"}) {
			t.Errorf("caller's trailer pushback = %q", got)
		}
		if cl := c.list(); !slices.Equal(cl, []outcome.Class{outcome.Overload}) {
			t.Errorf("inner layers saw %v", cl)
		}
		if e.b.count(mWatch) != 1 {
			t.Errorf("attempts = %d, want 1", e.b.count(mWatch))
		}
	})
}

// endingStream ends with err and the trailer tr.
type endingStream struct {
	grpc.ClientStream
	tr  metadata.MD
	err error
	n   int
}

func (s *endingStream) RecvMsg(any) error {
	if s.n++; s.n == 1 {
		return nil
	}
	return s.err
}
func (s *endingStream) Trailer() metadata.MD { return s.tr }

func TestStreamPushbackInterceptor(t *testing.T) {
	si := retry.StreamPushbackInterceptor()
	open := func(fs *endingStream, openErr error, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return si(context.Background(), watchDesc, nil, mWatch, func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
			if openErr != nil {
				for _, o := range opts {
					if t, ok := o.(grpc.TrailerCallOption); ok {
						*t.TrailerAddr = metadata.Pairs(retry.PushbackMetadata, "5")
					}
				}
				return nil, openErr
			}
			return fs, nil
		}, opts...)
	}
	pushback := metadata.Pairs(retry.PushbackMetadata, "-1")
	for _, tc := range []struct {
		name string
		tr   metadata.MD
		err  error
		want outcome.Class
	}{
		{"end", pushback, io.EOF, 0},
		{"failure", nil, fail(codes.Unavailable), outcome.Failure},
		{"pushback", pushback, fail(codes.Unavailable), outcome.Overload},
		{"retry info", nil, retryInfo(durationpb.New(time.Second)), outcome.Overload},
		{"context", pushback, context.Canceled, outcome.Overload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &endingStream{tr: tc.tr, err: tc.err}
			s, err := open(fs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.RecvMsg(nil); err != nil {
				t.Fatalf("first RecvMsg: %v", err)
			}
			err = s.RecvMsg(nil)
			if tc.err == io.EOF {
				if err != io.EOF {
					t.Errorf("err = %v, want io.EOF itself", err)
				}
				return
			}
			if c := outcome.Default.Classify(err); c != tc.want {
				t.Errorf("Classify = %v, want %v", c, tc.want)
			}
			if !errors.Is(err, tc.err) || err.Error() != tc.err.Error() || status.Code(err) != status.Code(tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
			if got := s.Trailer().Get(retry.PushbackMetadata); !slices.Equal(got, tc.tr.Get(retry.PushbackMetadata)) {
				t.Errorf("Trailer() = %v", s.Trailer())
			}
		})
	}
	t.Run("open fails with retry info", func(t *testing.T) {
		_, err := open(nil, retryInfo(durationpb.New(time.Second)))
		if outcome.Default.Classify(err) != outcome.Overload || status.Code(err) != codes.Unavailable {
			t.Errorf("err = %v, classified %v", err, outcome.Default.Classify(err))
		}
	})
	t.Run("open fails with a pushback trailer", func(t *testing.T) {
		var tr metadata.MD
		_, err := open(nil, fail(codes.Unavailable), grpc.Trailer(&tr))
		if outcome.Default.Classify(err) != outcome.Overload {
			t.Errorf("err = %v, classified %v", err, outcome.Default.Classify(err))
		}
	})
	t.Run("open fails", func(t *testing.T) {
		_, err := open(nil, fail(codes.Unavailable))
		if outcome.Default.Classify(err) != outcome.Failure {
			t.Errorf("err = %v, classified %v", err, outcome.Default.Classify(err))
		}
	})
}

// TestUnaryPushbackInterceptorOptions: the interceptor reads the trailer
// through the last grpc.Trailer option it is given, value or pointer, and
// adds one of its own when there is none; the caller's options reach the
// invoker unchanged.
func TestUnaryPushbackInterceptorOptions(t *testing.T) {
	ui := retry.UnaryPushbackInterceptor()
	invoker := func(tr metadata.MD, seen *[]grpc.CallOption) grpc.UnaryInvoker {
		return func(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
			*seen = slices.Clone(opts)
			for _, o := range opts {
				switch o := o.(type) {
				case grpc.TrailerCallOption:
					*o.TrailerAddr = tr
				case *grpc.TrailerCallOption:
					*o.TrailerAddr = tr
				}
			}
			return fail(codes.Unavailable)
		}
	}
	pushback := metadata.Pairs(retry.PushbackMetadata, "20")
	var mine, other metadata.MD
	for _, tc := range []struct {
		name string
		opts []grpc.CallOption
		n    int // options the invoker sees
	}{
		{"none", nil, 1},
		{"others", []grpc.CallOption{grpc.WaitForReady(true)}, 2},
		{"value", []grpc.CallOption{grpc.Trailer(&mine)}, 1},
		{"pointer", []grpc.CallOption{&grpc.TrailerCallOption{TrailerAddr: &mine}}, 1},
		{"two", []grpc.CallOption{grpc.Trailer(&other), grpc.Trailer(&mine)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []grpc.CallOption
			err := ui(context.Background(), mIdempotent, nil, nil, nil, invoker(pushback, &seen), tc.opts...)
			if outcome.Default.Classify(err) != outcome.Overload || status.Code(err) != codes.Unavailable {
				t.Errorf("err = %v, classified %v", err, outcome.Default.Classify(err))
			}
			if len(seen) != tc.n || !slices.Equal(seen[:len(tc.opts)], tc.opts) {
				t.Errorf("invoker saw %d options %v, want %d starting with the caller's", len(seen), seen, tc.n)
			}
			err = ui(context.Background(), mIdempotent, nil, nil, nil, invoker(nil, &seen), tc.opts...)
			if outcome.Default.Classify(err) != outcome.Failure {
				t.Errorf("without pushback: classified %v", outcome.Default.Classify(err))
			}
		})
	}
}

// TestInterceptorsMarkPushback: the retry interceptors used alone, with
// no marking chained inside them, return an error that carries pushback
// as overload, unary calls and streams alike, with the server's status
// unchanged; an error without pushback stays a failure.
func TestInterceptorsMarkPushback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trailer []string
		want    outcome.Class
	}{
		{"pushback", []string{"-1"}, outcome.Overload},
		{"none", nil, outcome.Failure},
	} {
		for _, kind := range []string{"unary", "stream"} {
			t.Run(tc.name+", "+kind, func(t *testing.T) {
				e := newEnv(t, envOpts{})
				var err error
				switch kind {
				case "unary":
					e.b.unary = func(c *serverCall) (*pb.PingResponse, error) {
						if tc.trailer != nil {
							_ = grpc.SetTrailer(c.ctx, metadata.Pairs(retry.PushbackMetadata, tc.trailer[0]))
						}
						return nil, fail(codes.Internal)
					}
					_, err = e.invoke(within(t, 10*time.Second), mIdempotent, "x")
				case "stream":
					e.b.stream = func(sc *serverCall) error {
						if tc.trailer != nil {
							sc.stream.SetTrailer(metadata.Pairs(retry.PushbackMetadata, tc.trailer[0]))
						}
						return fail(codes.Internal)
					}
					s, serr := pb.NewTunedServiceClient(e.cc).Watch(within(t, 10*time.Second), &pb.PingRequest{Payload: "w"})
					if serr != nil {
						t.Fatal(serr)
					}
					_, err = recvAll(s)
				}
				if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "injected Internal" {
					t.Fatalf("caller got %v", err)
				}
				if got := outcome.Default.Classify(err); got != tc.want {
					t.Errorf("caller's error classified %v, want %v", got, tc.want)
				}
			})
		}
	}
}
