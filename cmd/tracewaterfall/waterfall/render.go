package waterfall

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Options shape the drawing.
type Options struct {
	// Width is the number of columns of the time axis; 0 means 60.
	Width int
	// LabelWidth is the width of the span-name column; 0 means 44.
	LabelWidth int
	// ASCII draws with '=', '.' and '*' instead of block characters.
	ASCII bool
	// NoEvents leaves out the span events listed under each span.
	NoEvents bool
}

// Tag keys the drawing reads (written by failsoft's telemetry package).
const (
	tagAttempt       = "failsoft.attempt"
	tagHedge         = "failsoft.attempt.hedge"
	tagBackoffMS     = "failsoft.attempt.backoff_ms"
	tagBackoffReason = "failsoft.attempt.backoff_reason"
	tagStatus        = "rpc.response.status_code"
	tagOutcome       = "failsoft.outcome"
	tagRejectedBy    = "failsoft.rejected_by"
)

type node struct {
	span     *Span
	depth    int
	children []*node
}

// Render draws t. Spans are nested under their parents and ordered by start
// time; each is a bar on one time axis running from the earliest start (or
// the earliest backoff before it) to the latest end.
func Render(w io.Writer, t *Trace, o Options) error {
	if o.Width <= 0 {
		o.Width = 60
	}
	if o.LabelWidth <= 0 {
		o.LabelWidth = 44
	}
	bar, wait, mark := "█", "·", "◆"
	if o.ASCII {
		bar, wait, mark = "=", ".", "*"
	}
	if len(t.Spans) == 0 {
		_, err := fmt.Fprintf(w, "trace %s has no spans\n", t.TraceID)
		return err
	}
	l := NewLayout(t)
	col := func(us int64) int {
		c := int(float64(us) / float64(l.Total) * float64(o.Width))
		return min(max(c, 0), o.Width-1)
	}
	svcWidth := 0
	for _, p := range t.Processes {
		svcWidth = max(svcWidth, utf8.RuneCountInString(p.ServiceName))
	}
	svcWidth = min(svcWidth, 24)

	var b strings.Builder
	fmt.Fprintf(&b, "trace %s  %s  %d spans  %s\n", l.TraceID, l.Name, len(l.Rows), formatUS(l.Total))
	// Axis: tick labels at 0, 1/4, 1/2, 3/4 and the end, leaving out any
	// that would run into its neighbour.
	axis := []rune(strings.Repeat(" ", o.Width+12))
	endLabel := []rune(formatUS(l.Total))
	endAt := max(o.Width-len(endLabel), 0)
	copy(axis[endAt:], endLabel)
	next := 0 // first free column
	for q := 0; q < 4; q++ {
		c := q * (o.Width - 1) / 4
		label := []rune(formatUS(l.Total * int64(q) / 4))
		if c < next || (c+len(label) >= endAt && q > 0) {
			continue
		}
		copy(axis[c:], label)
		next = c + len(label) + 1
	}
	fmt.Fprintf(&b, "%s  %s  %s\n", pad("", svcWidth), pad("", o.LabelWidth), strings.TrimRight(string(axis), " "))

	for _, r := range l.Rows {
		row := make([]string, o.Width)
		for j := range row {
			row[j] = " "
		}
		for j := col(r.Start - r.Backoff); j < col(r.Start); j++ {
			row[j] = wait
		}
		for j := col(r.Start); j <= col(r.Start+r.Duration); j++ {
			row[j] = bar
		}
		for _, e := range r.Events {
			row[col(e.At)] = mark
		}
		label := strings.Repeat("  ", r.Depth) + r.Label
		fmt.Fprintf(&b, "%s  %s |%s| %s %s\n", pad(r.Service, svcWidth), pad(label, o.LabelWidth),
			strings.Join(row, ""), formatUS(r.Duration), r.Result)
		if !o.NoEvents {
			indent := strings.Repeat(" ", svcWidth+2) + strings.Repeat("  ", r.Depth+1)
			for _, e := range r.Events {
				fmt.Fprintf(&b, "%s%s +%s %s\n", indent, mark, formatUS(e.At), e.Text)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tree nests spans under their parents, both levels ordered by start time.
// A span whose parent is not in the trace is a root.
func tree(t *Trace) []*node {
	nodes := make(map[string]*node, len(t.Spans))
	for i := range t.Spans {
		nodes[t.Spans[i].SpanID] = &node{span: &t.Spans[i]}
	}
	var roots []*node
	for i := range t.Spans {
		n := nodes[t.Spans[i].SpanID]
		if p, ok := nodes[n.span.Parent()]; ok && p != n {
			p.children = append(p.children, n)
		} else {
			roots = append(roots, n)
		}
	}
	byStart := func(a, b *node) int {
		if c := cmpInt(a.span.StartTime, b.span.StartTime); c != 0 {
			return c
		}
		return strings.Compare(a.span.SpanID, b.span.SpanID)
	}
	var order func(ns []*node, depth int)
	order = func(ns []*node, depth int) {
		slices.SortFunc(ns, byStart)
		for _, n := range ns {
			n.depth = depth
			order(n.children, depth+1)
		}
	}
	order(roots, 0)
	return roots
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func backoffUS(s *Span) int64 {
	v, ok := s.Tag(tagBackoffMS)
	if !ok {
		return 0
	}
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil || ms <= 0 {
		return 0
	}
	return int64(ms * 1000)
}

func spanLabel(s *Span) string {
	name := shortName(s.OperationName)
	if n, ok := s.Tag(tagAttempt); ok {
		name = "attempt " + n
		if h, _ := s.Tag(tagHedge); h == "true" {
			name += " (hedge)"
		}
		if bo := backoffUS(s); bo > 0 {
			name += " after " + formatUS(bo)
			if r, ok := s.Tag(tagBackoffReason); ok && r != "" {
				name += " " + r
			}
		}
	}
	return name
}

func spanResult(s *Span) string {
	var parts []string
	if v, ok := s.Tag(tagStatus); ok {
		parts = append(parts, v)
	}
	if v, ok := s.Tag(tagRejectedBy); ok {
		parts = append(parts, "rejected by "+v)
	}
	return strings.Join(parts, " ")
}

func logLine(l *Log) string {
	var b strings.Builder
	b.WriteString(l.Event())
	for _, kv := range l.Fields {
		if kv.Key == "event" {
			continue
		}
		fmt.Fprintf(&b, " %s=%s", kv.Key, valueString(kv.Value))
	}
	return b.String()
}

// formatUS formats microseconds as µs, ms or s.
func formatUS(us int64) string {
	switch {
	case us < 1000:
		return strconv.FormatInt(us, 10) + "µs"
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(float64(us)/1e6, 'f', 2, 64) + "s"
}

// pad truncates or pads s to n runes.
func pad(s string, n int) string {
	c := utf8.RuneCountInString(s)
	if c > n {
		r := []rune(s)
		return string(r[:n-1]) + "…"
	}
	return s + strings.Repeat(" ", n-c)
}

// shortName drops the proto package from "pkg.v1.Service/Method" (and from
// "Attempt.pkg.v1.Service/Method"): the header names the call in full.
func shortName(op string) string {
	svc, method, ok := strings.Cut(op, "/")
	if !ok {
		return op
	}
	if i := strings.LastIndexByte(svc, '.'); i >= 0 {
		svc = svc[i+1:]
	}
	return svc + "/" + method
}
