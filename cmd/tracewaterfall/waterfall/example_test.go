package waterfall_test

import (
	"fmt"
	"os"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
)

func ExampleRender() {
	tag := func(k string, v any) waterfall.KeyValue { return waterfall.KeyValue{Key: k, Value: v} }
	t := &waterfall.Trace{
		TraceID:   "t1",
		Processes: map[string]waterfall.Process{"p": {ServiceName: "client"}},
		Spans: []waterfall.Span{
			{SpanID: "c", OperationName: "shop.v1.Orders/Get", StartTime: 0, Duration: 40_000, ProcessID: "p",
				Tags: []waterfall.KeyValue{tag("rpc.response.status_code", "OK")}},
			{SpanID: "a1", OperationName: "Attempt.shop.v1.Orders/Get", StartTime: 0, Duration: 10_000, ProcessID: "p",
				References: []waterfall.Reference{{RefType: "CHILD_OF", SpanID: "c"}},
				Tags:       []waterfall.KeyValue{tag("failsoft.attempt", 1.0), tag("rpc.response.status_code", "UNAVAILABLE")}},
			{SpanID: "a2", OperationName: "Attempt.shop.v1.Orders/Get", StartTime: 30_000, Duration: 10_000, ProcessID: "p",
				References: []waterfall.Reference{{RefType: "CHILD_OF", SpanID: "c"}},
				Tags: []waterfall.KeyValue{tag("failsoft.attempt", 2.0), tag("failsoft.attempt.backoff_ms", 20.0),
					tag("failsoft.attempt.backoff_reason", "policy"), tag("rpc.response.status_code", "OK")}},
		},
	}
	_ = waterfall.Render(os.Stdout, t, waterfall.Options{Width: 20, LabelWidth: 34, ASCII: true})
	// Output:
	// trace t1  shop.v1.Orders/Get  3 spans  40.0ms
	//                                             0µs 10.0ms    40.0ms
	// client  Orders/Get                         |====================| 40.0ms OK
	// client    attempt 1                        |======              | 10.0ms UNAVAILABLE
	// client    attempt 2 after 20.0ms policy    |     ..........=====| 10.0ms OK
}

func ExampleNewLayout() {
	t := &waterfall.Trace{
		TraceID:   "t1",
		Processes: map[string]waterfall.Process{"p": {ServiceName: "client"}},
		Spans: []waterfall.Span{
			{SpanID: "c", OperationName: "shop.v1.Orders/Get", StartTime: 1_000, Duration: 40_000, ProcessID: "p"},
			{SpanID: "a2", OperationName: "Attempt.shop.v1.Orders/Get", StartTime: 31_000, Duration: 10_000, ProcessID: "p",
				References: []waterfall.Reference{{RefType: "CHILD_OF", SpanID: "c"}},
				Tags:       []waterfall.KeyValue{{Key: "failsoft.attempt", Value: 2.0}, {Key: "failsoft.attempt.backoff_ms", Value: 20.0}}},
		},
	}
	l := waterfall.NewLayout(t)
	for _, r := range l.Rows {
		fmt.Printf("%d %-22s at %5dµs for %5dµs, after %5dµs\n", r.Depth, r.Label, r.Start, r.Duration, r.Backoff)
	}
	// Output:
	// 0 Orders/Get             at     0µs for 40000µs, after     0µs
	// 1 attempt 2 after 20.0ms at 30000µs for 10000µs, after 20000µs
}
