package checkout

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
)

// The HTML report is one file with everything inline (CSS and SVG), so
// that it opens from disk, offline, in any browser.

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Parse(reportHTML))

// Chart geometry, in SVG user units of a 1000 x 200 view box (the
// template draws the axes and grid with the same numbers).
const (
	plotLeft, plotRight    = 60.0, 990.0
	plotTop, plotBottom    = 12.0, 170.0
	breakerTop, breakerBot = 40.0, 140.0
)

var (
	phaseFills   = []string{"#eef3fb", "#fbf3e6", "#fbe9e9", "#eaf6ec", "#f2f2f2"}
	breakerFills = map[string]string{"closed": "#3c9a4e", "half-open": "#e0a21b", "open": "#c8372d"}
)

type svgBand struct {
	X, W              float64
	Name, Label, Fill string
}

type svgLine struct {
	D, Color, Name string
}

type svgRect struct {
	X, Y, W, H  float64
	Fill, Title string
}

type svgTick struct {
	At    float64
	Label string
}

type svgChart struct {
	ID, Title, Note string
	Bands           []svgBand
	Lines           []svgLine
	Rects           []svgRect
	XTicks, YTicks  []svgTick
	Legend          []svgLine // Name and Color only
}

type phaseRow struct {
	Name                       string
	From                       string
	Settled, Fallbacks, Failed int
	Charges                    int
	P50, P95, P99              string
}

type htmlView struct {
	Title  string
	Text   string
	Charts []svgChart
	Phases []phaseRow
	Trace  string
	// Waterfall is drawn as SVG, and WaterfallText is the terminal's
	// drawing of it, kept under it for copying and text-only browsers.
	Waterfall     *svgWaterfall
	WaterfallText string
	NoTrace       string
}

// WriteHTML writes the report as one self-contained HTML page: the text
// report, per-second charts of the samples (outcomes, charge latency, the
// breaker's state, pending charges queued to resend) over the phases, a
// table of the phases, and the waterfall of a retried charge when its
// trace was read back.
func (r *Report) WriteHTML(w io.Writer) error {
	var text bytes.Buffer
	r.Print(&text)
	v := htmlView{Title: "failsoft demo report", Text: text.String(), Phases: r.phaseRows()}
	end := time.Duration(0)
	if n := len(r.Samples); n > 0 {
		end = r.Samples[n-1].Elapsed
	}
	x := newAxis(end)
	bands := r.phaseBands(x, end)
	v.Charts = []svgChart{
		r.outcomeChart(x, bands),
		r.latencyChart(x, bands),
		r.breakerChart(x, bands, end),
		r.queueChart(x, bands),
	}
	switch {
	case r.Waterfall != nil && len(r.Waterfall.Spans) > 0:
		var text strings.Builder
		if err := waterfall.Render(&text, r.Waterfall, waterfall.Options{}); err != nil {
			return err
		}
		v.Trace, v.Waterfall, v.WaterfallText = r.Stats.RetriedTrace, newSVGWaterfall(r.Waterfall), text.String()
	case r.Traces == "":
		v.NoTrace = "No trace exported in this run" + strings.TrimPrefix(NoTraces, "not exported in this run") + "."
	case r.Stats.RetriedTrace == "":
		v.NoTrace = "Spans were exported to " + r.Traces + ", but no charge was retried."
	default:
		v.NoTrace = "The retried charge is trace " + r.Stats.RetriedTrace + "; its waterfall was not drawn: " + orNone(r.WaterfallMissing) + "."
	}
	return reportTmpl.Execute(w, v)
}

// axis maps the run's time onto the plot's width.
type axis struct{ end float64 }

func newAxis(end time.Duration) axis {
	return axis{end: math.Max(end.Seconds(), 1)}
}

func (a axis) x(d time.Duration) float64 {
	return plotLeft + (plotRight-plotLeft)*math.Min(d.Seconds(), a.end)/a.end
}

func (a axis) ticks() []svgTick {
	step := niceStep(a.end / 8)
	var out []svgTick
	for s := 0.0; s <= a.end+1e-9; s += step {
		out = append(out, svgTick{At: plotLeft + (plotRight-plotLeft)*s/a.end, Label: strconv.FormatFloat(s, 'f', -1, 64) + "s"})
	}
	return out
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// yScale maps values in [0, max] onto the plot's height.
type yScale struct{ max float64 }

func newYScale(max float64) yScale {
	step := niceStep(math.Max(max, 1) / 4)
	return yScale{max: step * math.Ceil(math.Max(max, 1)/step)}
}

func (s yScale) y(v float64) float64 { return plotBottom - (plotBottom-plotTop)*v/s.max }

func (s yScale) ticks(unit string) []svgTick {
	step := niceStep(s.max / 4)
	var out []svgTick
	for v := 0.0; v <= s.max+1e-9; v += step {
		out = append(out, svgTick{At: s.y(v), Label: strconv.FormatFloat(v, 'f', -1, 64) + unit})
	}
	return out
}

// polyline draws the points (t, v) as an SVG path; a NaN value breaks the line.
func polyline(x axis, y yScale, ts []time.Duration, vs []float64) string {
	var b strings.Builder
	pen := false
	for i, v := range vs {
		if math.IsNaN(v) {
			pen = false
			continue
		}
		cmd := "L"
		if !pen {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f %.1f ", cmd, x.x(ts[i]), y.y(v))
		pen = true
	}
	return strings.TrimSpace(b.String())
}

func (r *Report) phaseBands(x axis, end time.Duration) []svgBand {
	var out []svgBand
	ph := r.Stats.Phases
	for i, p := range ph {
		from := p.At.Sub(r.Start)
		to := end
		if i+1 < len(ph) {
			to = ph[i+1].At.Sub(r.Start)
		}
		if to <= from {
			continue
		}
		b := svgBand{X: x.x(from), W: x.x(to) - x.x(from), Name: p.Name, Fill: phaseFills[i%len(phaseFills)]}
		if b.W >= 60 {
			b.Label = p.Name // a narrow band's name is only in its tooltip
		}
		out = append(out, b)
	}
	return out
}

func (r *Report) times() []time.Duration {
	ts := make([]time.Duration, len(r.Samples))
	for i, s := range r.Samples {
		ts[i] = s.Elapsed
	}
	return ts
}

// series is one line of a chart: a value per sample, NaN where there is
// none.
type series struct {
	name, color string
	vals        []float64
}

// lineChart draws the series over the samples' times on c, with a y axis
// from 0 to the largest value.
func (r *Report) lineChart(c svgChart, x axis, unit string, ss []series) svgChart {
	top := 0.0
	for _, se := range ss {
		for _, v := range se.vals {
			if !math.IsNaN(v) {
				top = math.Max(top, v)
			}
		}
	}
	y := newYScale(top)
	c.XTicks, c.YTicks = x.ticks(), y.ticks(unit)
	ts := r.times()
	for _, se := range ss {
		l := svgLine{D: polyline(x, y, ts, se.vals), Color: se.color, Name: se.name}
		c.Lines, c.Legend = append(c.Lines, l), append(c.Legend, l)
	}
	return c
}

// perSample returns of(sample) for every sample.
func (r *Report) perSample(of func(i int, s Sample) float64) []float64 {
	out := make([]float64, len(r.Samples))
	for i, s := range r.Samples {
		out[i] = of(i, s)
	}
	return out
}

// rate returns the growth per second of a count, each sample measured
// from the last one at least half a second before it, so that a sample
// taken just after another (at the end of the load) makes no spike.
func (r *Report) rate(count func(Sample) int) []float64 {
	return r.perSample(func(i int, s Sample) float64 {
		var prev Sample
		for j := i - 1; j >= 0; j-- {
			if s.Elapsed-r.Samples[j].Elapsed >= time.Second/2 {
				prev = r.Samples[j]
				break
			}
		}
		dt := (s.Elapsed - prev.Elapsed).Seconds()
		if dt <= 0 {
			return 0
		}
		return float64(count(s)-count(prev)) / dt
	})
}

func (r *Report) outcomeChart(x axis, bands []svgBand) svgChart {
	c := svgChart{ID: "outcomes", Title: "Outcomes per second", Note: "calls finished each second, by what the customer got", Bands: bands}
	return r.lineChart(c, x, "/s", []series{
		{"paid at once", "#2e7d32", r.rate(func(s Sample) int { return s.Settled })},
		{"fallback answers (payment pending, cached reads)", "#ef8f00", r.rate(func(s Sample) int { return s.Fallbacks })},
		{"failures (declined, failed reads and refunds)", "#c62828", r.rate(func(s Sample) int { return s.Failed })},
	})
}

func (r *Report) latencyChart(x axis, bands []svgBand) svgChart {
	millis := func(q func(Percentiles) time.Duration) []float64 {
		return r.perSample(func(_ int, s Sample) float64 {
			if s.Charge.N == 0 {
				return math.NaN()
			}
			return float64(q(s.Charge)) / float64(time.Millisecond)
		})
	}
	c := svgChart{ID: "latency", Title: "Charge latency", Note: "of the charges finished each second, as the customer waited (pending answers included)", Bands: bands}
	return r.lineChart(c, x, "ms", []series{
		{"p50", "#1565c0", millis(func(p Percentiles) time.Duration { return p.P50 })},
		{"p95", "#8e24aa", millis(func(p Percentiles) time.Duration { return p.P95 })},
		{"p99", "#6d4c41", millis(func(p Percentiles) time.Duration { return p.P99 })},
	})
}

func (r *Report) breakerChart(x axis, bands []svgBand, end time.Duration) svgChart {
	c := svgChart{ID: "breaker", Title: "Breaker state", Note: "of the payment server's breaker, from its state changes (hover for the times)",
		Bands: bands, XTicks: x.ticks()}
	for _, st := range []string{"closed", "half-open", "open"} {
		c.Legend = append(c.Legend, svgLine{Name: st, Color: breakerFills[st]})
	}
	state, from := "closed", time.Duration(0)
	if tr := r.Stats.Transitions; len(tr) > 0 {
		state = tr[0].From
	}
	add := func(to time.Duration) {
		fill, ok := breakerFills[state]
		if !ok {
			fill = "#777777"
		}
		// A state that lasted less than a pixel is still drawn.
		c.Rects = append(c.Rects, svgRect{X: x.x(from), Y: breakerTop, W: math.Max(x.x(to)-x.x(from), 2), H: breakerBot - breakerTop,
			Fill: fill, Title: fmt.Sprintf("%s from %.1fs to %.1fs", state, from.Seconds(), to.Seconds())})
	}
	for _, t := range r.Stats.Transitions {
		at := t.At.Sub(r.Start)
		add(at)
		state, from = t.To, at
	}
	add(max(end, from))
	return c
}

func (r *Report) queueChart(x axis, bands []svgBand) svgChart {
	c := svgChart{ID: "queue", Title: "Queued to resend", Note: "pending charges in the outbox, sent again with their keys until they settle", Bands: bands}
	return r.lineChart(c, x, "", []series{
		{"charges queued to resend", "#00838f", r.perSample(func(_ int, s Sample) float64 { return float64(s.Queued) })},
	})
}

// phaseRows sums the samples by phase and adds each phase's charge
// latency.
func (r *Report) phaseRows() []phaseRow {
	var rows []phaseRow
	for i, p := range r.ByPhase {
		row := phaseRow{Name: p.Name, Charges: p.Charge.N, P50: "-", P95: "-", P99: "-"}
		if p.Charge.N > 0 {
			row.P50, row.P95, row.P99 = ms(p.Charge.P50), ms(p.Charge.P95), ms(p.Charge.P99)
		}
		if i < len(r.Stats.Phases) {
			row.From = fmt.Sprintf("+%.0fs", r.Stats.Phases[i].At.Sub(r.Start).Seconds())
		}
		var before, last *Sample
		for j := range r.Samples {
			s := &r.Samples[j]
			switch {
			case s.Phase == p.Name:
				last = s
			case last == nil:
				before = s
			}
		}
		if last != nil {
			b := Sample{}
			if before != nil {
				b = *before
			}
			row.Settled, row.Fallbacks, row.Failed = last.Settled-b.Settled, last.Fallbacks-b.Fallbacks, last.Failed-b.Failed
		}
		rows = append(rows, row)
	}
	return rows
}
