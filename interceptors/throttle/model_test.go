package throttle

import (
	"context"
	"io"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// model is the throttle written the simplest way: a list of what happened
// when, and the window and formula applied to it from scratch.
type model struct {
	k, limit          float64
	buckets           int64
	width             time.Duration
	failuresAsRejects bool
	now               time.Duration // since the start
	events            []modelEvent
	lastAnswer        time.Duration // the start of the latest call the target did (-1: none)
	failing           bool          // a call failed since the last answer
	dead              bool          // seen dead, and not answered since
	forgotAt          time.Duration // when presumed refusals were last forgotten (-1: never)
}

type modelEvent struct {
	bucket   int64
	accepted bool
	presumed bool // a local rejection, or a failure presumed a refusal
}

func (m *model) totals() (requests, accepts uint64) {
	cur := int64(m.now / m.width)
	for _, e := range m.events {
		if cur-e.bucket < m.buckets {
			requests++
			if e.accepted {
				accepts++
			}
		}
	}
	return requests, accepts
}

func (m *model) probability() float64 {
	r, a := m.totals()
	p := (float64(r) - m.k*float64(a)) / (float64(r) + 1)
	return math.Min(math.Max(p, 0), m.limit)
}

// answering: the target did the work of a call sent within the last second.
func (m *model) answering() bool { return m.lastAnswer >= 0 && m.now-m.lastAnswer < time.Second }

func (m *model) count(accepted bool) {
	m.events = append(m.events, modelEvent{bucket: int64(m.now / m.width), accepted: accepted})
}

func (m *model) presume() {
	m.events = append(m.events, modelEvent{bucket: int64(m.now / m.width), presumed: true})
}

// forget drops the presumed refusals.
func (m *model) forget() {
	m.forgotAt = m.now
	var kept []modelEvent
	for _, e := range m.events {
		if !e.presumed {
			kept = append(kept, e)
		}
	}
	m.events = kept
}

// answered: a heal is the first answer after the target was seen dead, or
// after a second or more in which calls only failed. Without failures as
// rejects nothing is presumed, and answers are not tracked.
func (m *model) answered() {
	if !m.failuresAsRejects {
		return
	}
	healed := m.dead || m.failing && (m.lastAnswer < 0 || m.now-m.lastAnswer >= time.Second)
	m.lastAnswer, m.failing, m.dead = m.now, false, false
	if healed {
		m.forget()
	}
}

// failed: a failure of a call sent a second or more after the latest
// answer shows the target dead; until then, a failure is presumed a
// refusal once the window holds 20 requests, unless it comes from before
// the latest forgetting. Without failures as rejects, a failure is an
// accept, and the target's life is not tracked.
func (m *model) failed() {
	if !m.failuresAsRejects {
		m.count(true)
		return
	}
	m.failing = true
	if !m.answering() && !m.dead {
		m.dead = true
		m.forget()
	}
	if r, _ := m.totals(); !m.dead && m.now > m.forgotAt && r >= 20 {
		m.presume()
		return
	}
	m.count(true)
}

// results a call can end with, and whether the target accepted it (by the
// default classification; nil means "unless failures are rejects, the
// target answers and the window holds 20 requests" (see model.failed); a result from an inner
// layer's Rejection is not counted at all).
var modelResults = []struct {
	err      error
	accepted *bool
	inner    bool
}{
	{nil, ptr(true), false},
	{status.Error(codes.NotFound, "not found"), ptr(true), false},
	{status.Error(codes.Canceled, "cancelled"), ptr(true), false},
	{status.Error(codes.ResourceExhausted, "busy"), ptr(false), false},
	{pushback{status.Error(codes.Unavailable, "busy, retry in 1s")}, ptr(false), false},
	{status.Error(codes.Unavailable, "down"), nil, false},
	{status.Error(codes.Internal, "oops"), nil, false},
	{&outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open"}, nil, true},
}

func ptr(b bool) *bool { return &b }

func TestModel(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///model")
	rapid.Check(t, func(rt *rapid.T) {
		m := &model{
			k:                 rapid.SampledFrom([]float64{1, 1.1, 1.5, 2, 3}).Draw(rt, "k"),
			limit:             rapid.SampledFrom([]float64{0, 0.5, 0.9, 1}).Draw(rt, "cap"),
			buckets:           int64(rapid.IntRange(1, 12).Draw(rt, "buckets")),
			width:             rapid.SampledFrom([]time.Duration{time.Millisecond, time.Second, 12 * time.Second}).Draw(rt, "width"),
			failuresAsRejects: rapid.Bool().Draw(rt, "failuresAsRejects"),
			lastAnswer:        -1,
			forgotAt:          -1,
		}
		clk := clock.NewFake(epoch)
		var u float64
		th, err := New(WithClock(clk), WithMultiplier(m.k), WithMaxProbability(m.limit),
			WithWindow(m.width*time.Duration(m.buckets), int(m.buckets)),
			WithFailuresAsRejects(m.failuresAsRejects), WithRand(func() float64 { return u }))
		if err != nil {
			rt.Fatal(err)
		}
		unary, streams := th.UnaryClientInterceptor(), th.StreamClientInterceptor()

		// call makes one call through the unary or the stream interceptor
		// and checks the decision against the model's.
		call := func(rt *rapid.T, stream bool) {
			i := rapid.IntRange(0, len(modelResults)-1).Draw(rt, "result")
			res := modelResults[i]
			u = rapid.Float64Range(0, 1).Filter(func(f float64) bool { return f < 1 }).Draw(rt, "u")
			p := m.probability()
			wantRejected := p > 0 && u < p

			var got error
			sent := false
			if stream {
				cs, err := streams(context.Background(), &grpc.StreamDesc{ServerStreams: true}, cc, "/m",
					func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
						sent = true
						final := res.err
						if final == nil {
							final = io.EOF
						}
						return &fakeStream{results: []error{nil, final}}, nil
					})
				got = err
				if err == nil {
					cs.RecvMsg(nil)
					if got = cs.RecvMsg(nil); got == io.EOF {
						got = nil
					}
				}
			} else {
				got = unary(context.Background(), "/m", nil, nil, cc,
					func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
						sent = true
						return res.err
					})
			}

			if rej, ok := got.(*outcome.Rejection); ok && rej.Layer == Layer {
				if !wantRejected {
					rt.Fatalf("rejected with p=%v, u=%v", p, u)
				}
				if sent {
					rt.Fatal("a rejected call was sent")
				}
				m.presume()
				return
			}
			if wantRejected {
				rt.Fatalf("not rejected with p=%v, u=%v", p, u)
			}
			if !sent || got != res.err {
				rt.Fatalf("sent %v, caller saw %v, want %v", sent, got, res.err)
			}
			switch {
			case res.inner:
			case res.accepted == nil:
				m.failed()
			default:
				if *res.accepted {
					m.answered()
				}
				m.count(*res.accepted)
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"unary":  func(rt *rapid.T) { call(rt, false) },
			"stream": func(rt *rapid.T) { call(rt, true) },
			"advance": func(rt *rapid.T) {
				// Mostly within a bucket, sometimes across the window.
				max := rapid.SampledFrom([]time.Duration{m.width / 4, m.width, m.width * time.Duration(m.buckets+1)}).Draw(rt, "scale")
				d := time.Duration(rapid.Int64Range(0, int64(max)).Draw(rt, "d"))
				clk.Advance(d)
				m.now += d
			},
			"": func(rt *rapid.T) {
				r, a := m.totals()
				s := th.State(cc.Target())
				if s.Requests != r || s.Accepts != a || s.Probability != m.probability() {
					rt.Fatalf("state %+v, model %d requests, %d accepts, p=%v", s, r, a, m.probability())
				}
			},
		})
	})
}
