package deadline_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/deadline"
)

func TestUnaryServerShortensDeadline(t *testing.T) {
	dl, err := deadline.New(deadline.WithSafetyMargin(250 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	incoming := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), ctxKey{}, "v"), incoming)
	defer cancel()
	var seen context.Context
	resp, err := dl.UnaryServerInterceptor()(ctx, "req", &grpc.UnaryServerInfo{FullMethod: mPlain},
		func(ctx context.Context, req any) (any, error) {
			seen = ctx
			return req.(string) + "-ok", nil
		})
	if err != nil || resp != "req-ok" {
		t.Fatalf("handler result changed: %v, %v", resp, err)
	}
	got, ok := seen.Deadline()
	if !ok || !got.Equal(incoming.Add(-250*time.Millisecond)) {
		t.Errorf("handler deadline = %v, want the incoming one minus the margin", incoming.Sub(got))
	}
	if seen.Value(ctxKey{}) != "v" {
		t.Error("incoming context values lost")
	}
	if seen.Err() != context.Canceled {
		t.Errorf("shortened context %v after the handler returned, want released", seen.Err())
	}
}

func TestServerLeavesCallsWithoutDeadline(t *testing.T) {
	for _, opts := range [][]deadline.Option{nil, {deadline.WithSafetyMargin(0)}} {
		dl, _ := deadline.New(opts...)
		ctx := context.Background()
		if len(opts) > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Hour) // margin 0: left alone too
			defer cancel()
		}
		var seen context.Context
		_, _ = dl.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
			seen = ctx
			return nil, nil
		})
		if seen != ctx {
			t.Errorf("options %v: context replaced", opts)
		}
		ss := &fakeServerStream{ctx: ctx}
		var seenSS grpc.ServerStream
		_ = dl.StreamServerInterceptor()(nil, ss, &grpc.StreamServerInfo{}, func(_ any, s grpc.ServerStream) error {
			seenSS = s
			return nil
		})
		if seenSS != ss {
			t.Errorf("options %v: stream replaced", opts)
		}
	}
}

type fakeServerStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []any
}

func (s *fakeServerStream) Context() context.Context { return s.ctx }
func (s *fakeServerStream) SendMsg(m any) error      { s.sent = append(s.sent, m); return nil }
func (s *fakeServerStream) SetHeader(metadata.MD) error {
	return nil
}

func TestStreamServerShortensDeadline(t *testing.T) {
	dl, _ := deadline.New(deadline.WithSafetyMargin(time.Second))
	incoming := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), incoming)
	defer cancel()
	ss := &fakeServerStream{ctx: ctx}
	var seen context.Context
	err := dl.StreamServerInterceptor()(nil, ss, &grpc.StreamServerInfo{}, func(_ any, s grpc.ServerStream) error {
		seen = s.Context()
		if err := s.SetHeader(nil); err != nil {
			return err
		}
		return s.SendMsg("m")
	})
	if err != nil || len(ss.sent) != 1 {
		t.Fatalf("stream methods not passed through: %v %v", err, ss.sent)
	}
	if got, _ := seen.Deadline(); !got.Equal(incoming.Add(-time.Second)) {
		t.Errorf("handler deadline = incoming-%v, want incoming-1s", incoming.Sub(got))
	}
	if seen.Err() != context.Canceled {
		t.Errorf("shortened context %v after the handler returned, want released", seen.Err())
	}
}
