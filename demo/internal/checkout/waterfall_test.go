package checkout

import (
	"math"
	"strings"
	"testing"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
)

// demoTrace is a charge as the demo's client and server report it: the
// first attempt fails, the second (after a backoff) is refused by the open
// breaker, and the call answers with a pending payment. Times are
// microseconds.
func demoTrace() *waterfall.Trace {
	tag := func(k string, v any) waterfall.KeyValue { return waterfall.KeyValue{Key: k, Value: v} }
	event := func(at int64, name string, fields ...waterfall.KeyValue) waterfall.Log {
		return waterfall.Log{Timestamp: at, Fields: append([]waterfall.KeyValue{tag("event", name)}, fields...)}
	}
	child := []waterfall.Reference{{RefType: "CHILD_OF", SpanID: "call"}}
	return &waterfall.Trace{
		TraceID: "5141d5d5c1681fa67da6a35a3ab1d970",
		Processes: map[string]waterfall.Process{
			"c": {ServiceName: "demo-checkout"}, "s": {ServiceName: "demo-payments"},
		},
		Spans: []waterfall.Span{
			{SpanID: "call", OperationName: "demo.v1.Payments/Charge <tag>", StartTime: 1_000_000, Duration: 200_000, ProcessID: "c",
				Tags: []waterfall.KeyValue{tag("rpc.response.status_code", "OK")},
				Logs: []waterfall.Log{
					event(1_050_000, "failsoft.backoff", tag("failsoft.attempt", 2.0), tag("failsoft.attempt.backoff_ms", 100.0)),
					event(1_150_000, "failsoft.breaker.rejected", tag("failsoft.breaker.state", "open")),
					event(1_199_000, "failsoft.fallback", tag("failsoft.reason", "pending")),
				}},
			{SpanID: "a1", OperationName: "Attempt.demo.v1.Payments/Charge", StartTime: 1_000_000, Duration: 50_000, ProcessID: "c",
				References: child, Tags: []waterfall.KeyValue{tag("failsoft.attempt", 1.0), tag("rpc.response.status_code", "UNAVAILABLE")}},
			{SpanID: "srv", OperationName: "demo.v1.Payments/Charge", StartTime: 1_001_000, Duration: 48_000, ProcessID: "s",
				References: []waterfall.Reference{{RefType: "CHILD_OF", SpanID: "a1"}},
				Tags:       []waterfall.KeyValue{tag("rpc.response.status_code", "UNAVAILABLE")}},
			{SpanID: "a2", OperationName: "Attempt.demo.v1.Payments/Charge", StartTime: 1_150_000, Duration: 10, ProcessID: "c",
				References: child, Tags: []waterfall.KeyValue{tag("failsoft.attempt", 2.0), tag("failsoft.attempt.backoff_ms", 100.0),
					tag("failsoft.attempt.backoff_reason", "policy"), tag("rpc.response.status_code", "UNAVAILABLE"),
					tag("failsoft.rejected_by", "breaker")}},
		},
	}
}

// The SVG waterfall has a row per span and per span event, in the order of
// the text drawing; bars sit on the time axis with their backoffs ending
// where they start, coloured by outcome, and events are marks at their
// times, coloured by kind.
func TestSVGWaterfall(t *testing.T) {
	w := newSVGWaterfall(demoTrace())
	type row struct{ class, service, label, note, fill string }
	var got []row
	for _, r := range w.Rows {
		g := row{class: r.Class, service: r.Service, label: r.Label, note: r.Note}
		switch {
		case r.Bar != nil:
			g.fill = r.Bar.Fill
		case r.Mark != nil:
			g.fill = r.Mark.Fill
		}
		got = append(got, g)
	}
	want := []row{
		{"span", "demo-checkout", "Payments/Charge <tag>", "200ms OK", wfOK},
		{"event", "", "+50ms backoff", "attempt=2 attempt.backoff_ms=100", wfEventFills["backoff"]},
		{"event", "", "+150ms breaker.rejected", "breaker.state=open", wfEventFills["breaker"]},
		{"event", "", "+199ms fallback", "reason=pending", wfEventFills["fallback"]},
		{"span", "demo-checkout", "attempt 1", "50ms UNAVAILABLE", wfFailed},
		{"span", "demo-payments", "Payments/Charge", "48ms UNAVAILABLE", wfFailed},
		{"span", "demo-checkout", "attempt 2 after 100.0ms policy", "10µs UNAVAILABLE rejected by breaker", wfFailed},
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if w.Spans != 4 || w.Marks != 3 {
		t.Errorf("%d spans and %d marks drawn, want 4 and 3", w.Spans, w.Marks)
	}

	near := func(a, b float64) bool { return math.Abs(a-b) < 0.05 }
	x := func(us float64) float64 { return wfLeft + (wfRight-wfLeft)*us/200_000 }
	call, a1, srv, a2 := w.Rows[0], w.Rows[4], w.Rows[5], w.Rows[6]
	if !near(call.Bar.X, wfLeft) || !near(call.Bar.X+call.Bar.W, wfRight) {
		t.Errorf("the call's bar spans %.1f..%.1f, want the whole axis %.0f..%.0f", call.Bar.X, call.Bar.X+call.Bar.W, wfLeft, wfRight)
	}
	if !near(a1.Bar.W, x(50_000)-wfLeft) || !near(srv.Bar.X, x(1_000)) {
		t.Errorf("attempt 1 at %.1f wide %.1f, its server span at %.1f", a1.Bar.X, a1.Bar.W, srv.Bar.X)
	}
	if a2.Backoff == nil || !near(a2.Backoff.X, x(50_000)) || !near(a2.Backoff.X+a2.Backoff.W, a2.Bar.X) {
		t.Errorf("attempt 2's backoff %+v does not lead into its bar at %.1f", a2.Backoff, a2.Bar.X)
	}
	if a2.Bar.W != wfMinBarW {
		t.Errorf("a 10µs bar is %.2f wide, want the minimum %.0f", a2.Bar.W, wfMinBarW)
	}
	if a1.Backoff != nil || call.Backoff != nil {
		t.Error("a span without a backoff has one drawn")
	}
	if srv.LabelX <= a1.LabelX || a1.LabelX <= call.LabelX {
		t.Errorf("labels at %.0f, %.0f, %.0f: want each level indented", call.LabelX, a1.LabelX, srv.LabelX)
	}
	// The event at 199 ms is near the axis's end: its note is on its left.
	if ev := w.Rows[3]; ev.NoteAnchor != "end" || ev.NoteX >= x(199_000) || !strings.HasPrefix(ev.Mark.D, "M857.7 ") {
		t.Errorf("late event: note %s at %.1f, mark %q", ev.NoteAnchor, ev.NoteX, ev.Mark.D)
	}
	if ev := w.Rows[1]; ev.NoteAnchor != "start" || ev.NoteX <= x(50_000) {
		t.Errorf("early event: note %s at %.1f", ev.NoteAnchor, ev.NoteX)
	}
	var ticks []string
	for _, tk := range w.Ticks {
		ticks = append(ticks, tk.Label)
	}
	if strings.Join(ticks, " ") != "0s 50ms 100ms 150ms 200ms" || !near(w.Ticks[4].At, wfRight) {
		t.Errorf("axis ticks %q", ticks)
	}
	for i := 1; i < len(w.Rows); i++ {
		if w.Rows[i].TextY <= w.Rows[i-1].TextY {
			t.Errorf("row %d is not below row %d", i, i-1)
		}
	}
	if w.Height <= w.Rows[len(w.Rows)-1].TextY {
		t.Errorf("view box height %.0f cuts the last row at %.0f", w.Height, w.Rows[len(w.Rows)-1].TextY)
	}
}

func TestMicros(t *testing.T) {
	for us, want := range map[int64]string{
		0: "0s", 15: "15µs", 999: "999µs", 1_000: "1ms", 12_345: "12.35ms", 33_421: "33.42ms",
		999_999: "1s", 1_234_567: "1.23s",
	} {
		if got := micros(us); got != want {
			t.Errorf("micros(%d) = %q, want %q", us, got, want)
		}
	}
}
