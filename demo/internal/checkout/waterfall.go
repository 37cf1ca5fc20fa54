package checkout

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
)

// Waterfall geometry, in SVG user units of a view box 1000 wide (the
// template puts the service column at 6 and the column headings with the
// same numbers): a service column, a label column indented by depth, then
// the time axis, whose bars are followed by their duration and result.
const (
	wfLabelX           = 150.0
	wfIndent           = 12.0
	wfLeft, wfRight    = 400.0, 860.0
	wfTop              = 26.0 // below the axis labels
	wfRowH, wfBarH     = 20.0, 12.0
	wfServiceRunes     = 22
	wfLabelRunes       = 40
	wfEventNoteRunes   = 70
	wfMarkHalf         = 5.0
	wfMinBarW          = 2.0 // a span shorter than a unit is still seen
	wfNoteGap          = 4.0
	wfEventNoteAnchorX = 620.0 // an event further right has its note on its left
)

// Waterfall colours: distinct from the charts', so that a screenshot
// shows which drawing was rendered.
var (
	wfOK, wfFailed, wfNoStatus, wfBackoff = "#43a047", "#e53935", "#5c6bc0", "#cfd8dc"
	// wfEventFills colours an event by its family, the part of its name
	// after "failsoft.": breaker decisions, fallbacks (a pending charge),
	// backoffs; others take wfEventOther.
	wfEventFills = map[string]string{"breaker": "#8e24aa", "fallback": "#fb8c00", "backoff": "#90a4ae"}
	wfEventOther = "#3949ab"
)

// svgWaterfall is the trace of a retried charge, drawn as SVG: a row per
// span (a bar, with its backoff as a lead-in) and a row per span event (a
// mark at its time).
type svgWaterfall struct {
	Height       float64
	Left, Right  float64 // the axis, for the template's grid
	Top, Bottom  float64
	Ticks        []svgTick
	Rows         []wfRow
	Spans, Marks int // what was drawn, for the page's note
}

type wfRow struct {
	Class            string // "span" or "event"
	TextY            float64
	Service          string
	LabelX           float64
	Label            string
	Backoff, Bar     *svgRect
	Mark             *wfMark
	NoteX            float64
	Note, NoteAnchor string
}

type wfMark struct {
	D, Fill, Title string
}

// newSVGWaterfall lays out tr's spans on an axis from the earliest backoff
// or start to the latest end.
func newSVGWaterfall(tr *waterfall.Trace) *svgWaterfall {
	l := waterfall.NewLayout(tr)
	x := func(us int64) float64 { return wfLeft + (wfRight-wfLeft)*float64(us)/float64(l.Total) }
	w := &svgWaterfall{Left: wfLeft, Right: wfRight, Top: wfTop}
	for q := range 5 {
		us := l.Total * int64(q) / 4
		w.Ticks = append(w.Ticks, svgTick{At: x(us), Label: micros(us)})
	}
	y := wfTop
	row := func(r wfRow) {
		r.TextY = y + wfRowH/2 + 4
		w.Rows = append(w.Rows, r)
		y += wfRowH
	}
	barY := func() float64 { return y + (wfRowH-wfBarH)/2 }
	for _, s := range l.Rows {
		r := wfRow{Class: "span", Service: clip(s.Service, wfServiceRunes),
			LabelX: wfLabelX + wfIndent*float64(s.Depth), Label: clip(s.Label, wfLabelRunes-2*s.Depth)}
		if s.Backoff > 0 {
			from := x(s.Start - s.Backoff)
			r.Backoff = &svgRect{X: from, Y: barY(), W: x(s.Start) - from, H: wfBarH, Fill: wfBackoff,
				Title: fmt.Sprintf("backoff of %s before %s", micros(s.Backoff), s.Label)}
		}
		from, to := x(s.Start), x(s.Start+s.Duration)
		r.Bar = &svgRect{X: from, Y: barY(), W: math.Max(to-from, wfMinBarW), H: wfBarH, Fill: resultFill(s.Result),
			Title: strings.TrimSpace(fmt.Sprintf("%s %s: %s to %s, %s %s", s.Service, s.Label,
				micros(s.Start), micros(s.Start+s.Duration), micros(s.Duration), s.Result))}
		r.NoteX, r.NoteAnchor = from+r.Bar.W+wfNoteGap, "start"
		r.Note = strings.TrimSpace(micros(s.Duration) + " " + s.Result)
		row(r)
		w.Spans++
		for _, e := range s.Events {
			at := x(e.At)
			cy := y + wfRowH/2
			r := wfRow{Class: "event", LabelX: wfLabelX + wfIndent*float64(s.Depth+1),
				Label: clip("+"+micros(e.At)+" "+shortEvent(e.Name), wfLabelRunes-2*(s.Depth+1)),
				Mark: &wfMark{D: fmt.Sprintf("M%.1f %.1fl%g %g l%g %g l%g %g z", at, cy-wfMarkHalf,
					wfMarkHalf, wfMarkHalf, -wfMarkHalf, wfMarkHalf, -wfMarkHalf, -wfMarkHalf),
					Fill: eventFill(e.Name), Title: fmt.Sprintf("+%s %s", micros(e.At), e.Text)},
				Note: clip(shortFields(e), wfEventNoteRunes)}
			r.NoteX, r.NoteAnchor = at+wfMarkHalf+wfNoteGap, "start"
			if at > wfEventNoteAnchorX {
				r.NoteX, r.NoteAnchor = at-wfMarkHalf-wfNoteGap, "end"
			}
			row(r)
			w.Marks++
		}
	}
	w.Bottom = y
	w.Height = y + wfRowH/2
	return w
}

// resultFill colours a bar by its span's status: OK, a failure, or none
// (a span without a status, such as a hedge's parent).
func resultFill(result string) string {
	code, _, _ := strings.Cut(result, " ")
	switch code {
	case "OK":
		return wfOK
	case "":
		return wfNoStatus
	}
	return wfFailed
}

func eventFill(name string) string {
	family, _, _ := strings.Cut(strings.TrimPrefix(name, "failsoft."), ".")
	if f, ok := wfEventFills[family]; ok {
		return f
	}
	return wfEventOther
}

// shortEvent drops the "failsoft." every event name of failsoft's starts
// with.
func shortEvent(name string) string { return strings.TrimPrefix(name, "failsoft.") }

// shortFields returns an event's fields, without the "failsoft." of their
// keys.
func shortFields(e waterfall.Event) string {
	fields := strings.TrimSpace(strings.TrimPrefix(e.Text, e.Name))
	return strings.ReplaceAll(fields, "failsoft.", "")
}

// micros formats a time of the trace, in microseconds, to three
// significant digits or whole microseconds.
func micros(us int64) string {
	d := time.Duration(us) * time.Microsecond
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// clip cuts s to n runes, ending with an ellipsis when cut.
func clip(s string, n int) string {
	if n < 1 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
