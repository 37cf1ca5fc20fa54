package waterfall

import "math"

// Layout is a trace arranged for drawing, as Render draws it in text and
// other drawings (an SVG) may draw it too: one row per span, nested under
// its parent and in start order, on one time axis in microseconds that
// runs from the earliest start (or the earliest backoff before it) to the
// latest end.
type Layout struct {
	TraceID string
	// Name is the operation of the first root span: the call.
	Name string
	// Total is the length of the axis, at least 1 µs.
	Total int64
	Rows  []Row
}

// Row is one span of a Layout. Times are microseconds on the axis.
type Row struct {
	// Service is the name of the process that reported the span.
	Service string
	// Label names the span: "attempt 2 after 10.0ms policy" for an
	// attempt, else its operation without the proto package.
	Label string
	// Depth is the span's nesting under the roots (0 for a root).
	Depth int
	// Start and Duration place the span's bar; Backoff is the time the
	// span waited before Start (an attempt's backoff), 0 for none.
	Start, Duration, Backoff int64
	// Result is the span's status code, and what rejected it if
	// something did ("UNAVAILABLE rejected by breaker").
	Result string
	Events []Event
}

// Event is a span event (a log in Jaeger's model) of a Row.
type Event struct {
	// At is its time on the axis.
	At int64
	// Name is the event's name; Text is the name and its fields.
	Name, Text string
}

// NewLayout lays t out. A trace without spans has no rows.
func NewLayout(t *Trace) *Layout {
	l := &Layout{TraceID: t.TraceID, Total: 1}
	if len(t.Spans) == 0 {
		return l
	}
	start, end := int64(math.MaxInt64), int64(math.MinInt64)
	for i := range t.Spans {
		s := &t.Spans[i]
		start = min(start, s.StartTime-backoffUS(s))
		end = max(end, s.StartTime+s.Duration)
	}
	l.Total = max(end-start, 1)
	roots := tree(t)
	l.Name = roots[0].span.OperationName
	var walk func(n *node)
	walk = func(n *node) {
		s := n.span
		r := Row{Service: t.Processes[s.ProcessID].ServiceName, Label: spanLabel(s), Depth: n.depth,
			Start: s.StartTime - start, Duration: s.Duration, Backoff: backoffUS(s), Result: spanResult(s)}
		for i := range s.Logs {
			lg := &s.Logs[i]
			r.Events = append(r.Events, Event{At: lg.Timestamp - start, Name: lg.Event(), Text: logLine(lg)})
		}
		l.Rows = append(l.Rows, r)
		for _, c := range n.children {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return l
}
