package checkout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
)

// storyReport is a fixed run: four phases of 10 s, the breaker opening in
// the outage and closing in the recovery, pending charges queued in the
// outage and drained after it.
func storyReport() *Report {
	start := time.Unix(1_700_000_000, 0)
	phases := []PhaseStart{
		{Name: "healthy", At: start},
		{Name: "flaky", At: start.Add(10 * time.Second)},
		{Name: "outage", At: start.Add(20 * time.Second)},
		{Name: "recovery", At: start.Add(30 * time.Second)},
	}
	var samples []Sample
	var settled, fallbacks, failed, queued int
	for sec := 1; sec <= 40; sec++ {
		s := Sample{Elapsed: time.Duration(sec) * time.Second, Breaker: "closed",
			Charge: Percentiles{N: 10, P50: 8 * time.Millisecond, P95: 30 * time.Millisecond, P99: 40 * time.Millisecond}}
		switch {
		case sec <= 10:
			s.Phase = "healthy"
			settled += 12
		case sec <= 20:
			s.Phase = "flaky"
			settled += 10
			failed++
			s.Charge.P95, s.Charge.P99 = 250*time.Millisecond, 900*time.Millisecond
		case sec <= 30:
			s.Phase = "outage"
			fallbacks += 11
			queued += 9
			s.Breaker = "open"
			if sec == 21 {
				s.Breaker = "closed"
				failed += 5
			}
			if sec == 25 || sec == 28 {
				s.Breaker = "half-open"
			}
			s.Charge.P50, s.Charge.P95 = time.Millisecond, 2*time.Millisecond
		default:
			s.Phase = "recovery"
			settled += 12
			queued = max(0, queued-15)
			if sec == 31 {
				s.Breaker = "half-open"
			}
		}
		if sec == 33 {
			s.Charge = Percentiles{} // no charge finished in that second
		}
		s.Settled, s.Fallbacks, s.Failed, s.Queued = settled, fallbacks, failed, queued
		samples = append(samples, s)
	}
	at := func(sec float64) time.Time { return start.Add(time.Duration(sec * float64(time.Second))) }
	return &Report{
		Start: start,
		Stats: Snapshot{
			Calls: map[string]int{"Charge": 400}, LogicalCalls: 400,
			Outcomes:  map[string]int{StateSettled: 340, StatePending: 110},
			Fallbacks: map[string]int{"Charge:pending": 110},
			Transitions: []Transition{
				{At: at(21.2), From: "closed", To: "open"}, {At: at(24.2), From: "open", To: "half-open"},
				{At: at(25.1), From: "half-open", To: "open"}, {At: at(30.5), From: "open", To: "half-open"},
				{At: at(31.2), From: "half-open", To: "closed"},
			},
			Phases: phases,
		},
		Samples: samples,
		ByPhase: []PhaseLatency{
			{Name: "healthy", Charge: Percentiles{N: 120, P50: 8 * time.Millisecond, P95: 30 * time.Millisecond, P99: 41 * time.Millisecond}},
			{Name: "flaky", Charge: Percentiles{N: 110, P50: 9 * time.Millisecond, P95: 250 * time.Millisecond, P99: 912 * time.Millisecond}},
			{Name: "outage", Charge: Percentiles{N: 110, P50: time.Millisecond, P95: 2 * time.Millisecond, P99: 3 * time.Millisecond}},
			{Name: "recovery", Charge: Percentiles{N: 120, P50: 8 * time.Millisecond, P95: 31 * time.Millisecond, P99: 44 * time.Millisecond}},
		},
	}
}

// externalRef matches anything that would make the page load something:
// a URL scheme, a protocol-relative or CSS reference, an import.
var externalRef = regexp.MustCompile(`(?i)(https?:|//[a-z0-9]|\bsrc\s*=|\bhref\s*=|url\(|@import)`)

// The page holds the charts as inline SVG, the phase table and the
// waterfall or the reason there is none, and refers to nothing outside
// itself.
func TestHTMLReportStructure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Report)
		want   []string
		reject []string
	}{
		{
			name: "no trace exported",
			want: []string{"no trace exported in this run"},
		},
		{
			name: "waterfall drawn",
			edit: func(r *Report) {
				r.Traces, r.Stats.RetriedTrace = "127.0.0.1:4317", "5141d5d5c1681fa67da6a35a3ab1d970"
				r.Waterfall = demoTrace()
			},
			// Names are text, escaped, in the SVG and in the text drawing
			// under it.
			want: []string{`<svg class="waterfall" id="waterfall"`, "trace 5141d5d5c1681fa67da6a35a3ab1d970",
				`>Payments/Charge &lt;tag&gt;</text>`, `<details id="waterfall-text">`, "attempt 2 after 100.0ms policy"},
			reject: []string{"no trace exported", "<tag>"},
		},
		{
			name: "trace without spans",
			edit: func(r *Report) {
				r.Traces, r.Stats.RetriedTrace = "127.0.0.1:4317", "5141d5d5c1681fa67da6a35a3ab1d970"
				r.Waterfall = &waterfall.Trace{TraceID: "5141d5d5c1681fa67da6a35a3ab1d970"}
			},
			want:   []string{"its waterfall was not drawn"},
			reject: []string{`<svg class="waterfall"`},
		},
		{
			name: "trace not found",
			edit: func(r *Report) {
				r.Traces, r.Stats.RetriedTrace = "127.0.0.1:4317", "5141d5d5c1681fa67da6a35a3ab1d970"
				r.WaterfallMissing = "trace not found"
			},
			want:   []string{"its waterfall was not drawn: trace not found"},
			reject: []string{`<svg class="waterfall"`, `<details id="waterfall-text">`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := storyReport()
			if tc.edit != nil {
				tc.edit(r)
			}
			var b bytes.Buffer
			if err := r.WriteHTML(&b); err != nil {
				t.Fatal(err)
			}
			page := b.String()
			checkPage(t, page)
			for _, w := range tc.want {
				if !strings.Contains(strings.ToLower(page), strings.ToLower(w)) {
					t.Errorf("page lacks %q", w)
				}
			}
			for _, w := range tc.reject {
				if strings.Contains(strings.ToLower(page), strings.ToLower(w)) {
					t.Errorf("page has %q", w)
				}
			}
		})
	}
}

// checkPage checks what every report page has: the four charts with their
// lines or states, the phases, and no external reference.
func checkPage(t *testing.T, page string) {
	t.Helper()
	if m := externalRef.FindString(page); m != "" {
		t.Errorf("page refers outside itself: %q", m)
	}
	for _, id := range []string{"outcomes", "latency", "breaker", "queue"} {
		i := strings.Index(page, `<section class="chart" id="`+id+`">`)
		if i < 0 {
			t.Errorf("no chart %s", id)
			continue
		}
		sec := page[i:]
		sec = sec[:strings.Index(sec, "</section>")]
		if !strings.Contains(sec, "<svg") {
			t.Errorf("chart %s has no svg", id)
		}
		if id == "breaker" {
			continue
		}
		// Each series is a path through the samples: 40 points, one pen
		// lift where the latency chart has no charge.
		for _, d := range regexp.MustCompile(`<path class="series" d="([^"]*)"`).FindAllStringSubmatch(sec, -1) {
			if n := strings.Count(d[1], "M") + strings.Count(d[1], "L"); n < 39 {
				t.Errorf("chart %s: path %q has %d points, want at least 39", id, d[1], n)
			}
		}
		if n := strings.Count(sec, `<path class="series"`); n == 0 {
			t.Errorf("chart %s has no series path", id)
		}
	}
	for _, p := range []string{"healthy", "flaky", "outage", "recovery"} {
		if !strings.Contains(page, "<td>"+p+"</td>") {
			t.Errorf("phase table lacks %s", p)
		}
		if !strings.Contains(page, "<title>"+p+"</title>") {
			t.Errorf("charts lack the band of %s", p)
		}
	}
	// The breaker's states by its transitions: closed, open at 21.2 s,
	// probing twice, closed again in the recovery.
	states := regexp.MustCompile(`<rect class="state"[^>]*><title>(\S+) from`).FindAllStringSubmatch(page, -1)
	var got []string
	for _, s := range states {
		got = append(got, s[1])
	}
	want := "closed open half-open open half-open closed"
	if strings.Join(got, " ") != want {
		t.Errorf("breaker states %q, want %q", strings.Join(got, " "), want)
	}
	if !strings.Contains(page, "<td>flaky</td><td>&#43;10s</td><td>100</td><td>0</td><td>10</td><td>110</td><td>9ms</td><td>250ms</td><td>912ms</td>") {
		t.Errorf("phase row of flaky missing or wrong in %s", page[strings.Index(page, "<table"):strings.Index(page, "</table>")])
	}
}

// The report renders in a real browser: headless Chromium takes a
// screenshot of the page, which must be a PNG of the window's size with
// the charts' colours in it. The screenshot is kept as an artifact.
func TestHTMLReportRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("FAILSOFT_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("chromium is required (FAILSOFT_REQUIRE_CHROMIUM=1) but not on PATH")
		}
		t.Skip("chromium not on PATH (Debian package chromium); FAILSOFT_REQUIRE_CHROMIUM=1 makes this a failure")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	r := storyReport()
	r.Traces, r.Stats.RetriedTrace, r.Waterfall = "127.0.0.1:4317", "5141d5d5c1681fa67da6a35a3ab1d970", demoTrace()
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	checkPage(t, b.String())
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	const width, height = 1200, 2000
	// Under the test's output directory with -artifacts; copied to
	// FAILSOFT_ARTIFACTS_DIR too when that is set.
	shot := filepath.Join(t.ArtifactDir(), "report.png")
	out, err := runChromium(t, bin, "--screenshot="+shot, fmt.Sprintf("--window-size=%d,%d", width, height), "file://"+page)
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	keepArtifact(t, shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got.X != width || got.Y != height {
		t.Errorf("screenshot is %v, want %dx%d", got, width, height)
	}
	colours := map[[3]uint32]int{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 2 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}]++
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot has %d distinct colours; a rendered report has many more", len(colours))
	}
	// The breaker's red and green, and the phases' band colours, are on
	// the screen: the charts were drawn, not just the text; so are the
	// waterfall's bars (OK, failed, a backoff) and its breaker mark.
	for _, c := range []string{"#c8372d", "#3c9a4e", "#fbe9e9", wfOK, wfFailed, wfBackoff, wfEventFills["breaker"]} {
		var rgb [3]uint32
		if _, err := fmt.Sscanf(c, "#%02x%02x%02x", &rgb[0], &rgb[1], &rgb[2]); err != nil {
			t.Fatal(err)
		}
		if colours[rgb] == 0 {
			t.Errorf("colour %s not on the screenshot", c)
		}
	}

	// The DOM as the browser built and laid it out holds the four charts
	// and the waterfall, whose bars and marks have a size on the screen.
	// A copy of the page measures them with a script (the report itself
	// has none) and writes the figures into the DOM.
	measured := filepath.Join(dir, "measured.html")
	probe := strings.Replace(b.String(), "</body>", measureScript+"</body>", 1)
	if err := os.WriteFile(measured, []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	dom, err := runChromium(t, bin, "--dump-dom", fmt.Sprintf("--window-size=%d,%d", width, height), "file://"+measured)
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, dom)
	}
	if n := strings.Count(string(dom), "<svg"); n != 5 {
		t.Errorf("rendered DOM has %d svg drawings, want 5 (4 charts and the waterfall)", n)
	}
	m := regexp.MustCompile(`<pre id="measured">([^<]*)</pre>`).FindStringSubmatch(string(dom))
	if m == nil {
		t.Fatalf("the measuring script left no figures in the DOM:\n%.2000s", dom)
	}
	t.Logf("waterfall as laid out: %s", m[1])
	var svgW, svgH float64
	var bars, backoffs, marks, labels int
	if _, err := fmt.Sscanf(m[1], "svg=%fx%f bars=%d backoffs=%d marks=%d labels=%d", &svgW, &svgH, &bars, &backoffs, &marks, &labels); err != nil {
		t.Fatalf("figures %q: %v", m[1], err)
	}
	if svgW < width/2 || svgH < 100 {
		t.Errorf("waterfall laid out %.0fx%.0f px, want at least %dx100", svgW, svgH, width/2)
	}
	// Seen: with a width and height on the screen (a 10 µs bar too).
	if bars != 4 || backoffs != 1 || marks != 3 || labels < 7 {
		t.Errorf("seen: %d bars, %d backoffs, %d marks, %d labels; want 4, 1, 3 and at least 7", bars, backoffs, marks, labels)
	}
	if !strings.Contains(string(dom), `<details id="waterfall-text">`) {
		t.Error("the text drawing under the waterfall is not in the DOM")
	}
}

// measureScript writes, into the page, the size of the waterfall's SVG as
// laid out and how many of its bars, backoffs, marks and labels have a
// size on the screen.
const measureScript = `<script>
(function () {
  var svg = document.querySelector("svg.waterfall");
  var seen = function (sel) {
    return Array.prototype.filter.call(svg.querySelectorAll(sel), function (e) {
      var r = e.getBoundingClientRect();
      return r.width > 0 && r.height > 0;
    }).length;
  };
  var box = svg.getBoundingClientRect();
  var out = document.createElement("pre");
  out.id = "measured";
  out.textContent = "svg=" + box.width.toFixed(0) + "x" + box.height.toFixed(0) +
    " bars=" + seen("rect.bar") + " backoffs=" + seen("rect.backoff") +
    " marks=" + seen("path.mark") + " labels=" + seen("g.span text");
  document.body.appendChild(out);
})();
</script>
`

// runChromium runs headless Chromium with its own profile, bounded in
// time; on timeout the whole process group is killed.
func runChromium(t *testing.T, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("did not finish in time: %w", err)
	}
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// keepArtifact logs where path is and copies it to
// FAILSOFT_ARTIFACTS_DIR when that is set.
func keepArtifact(t *testing.T, path string) {
	t.Helper()
	t.Logf("screenshot: %s", path)
	dir := os.Getenv("FAILSOFT_ARTIFACTS_DIR")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("artifact: %v", err)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("artifact: %v", err)
		return
	}
	dst := filepath.Join(dir, "demo-report-"+filepath.Base(path))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Errorf("artifact: %v", err)
		return
	}
	t.Logf("screenshot copied to %s", dst)
}

// Rates are per second, and a sample taken right after another (the last
// one, after the pending charges drained) is measured over a longer
// stretch instead of making a spike.
func TestRatePerSecond(t *testing.T) {
	r := &Report{Samples: []Sample{
		{Elapsed: time.Second, Settled: 10},
		{Elapsed: 2 * time.Second, Settled: 30},
		{Elapsed: 2*time.Second + 10*time.Millisecond, Settled: 31},
		{Elapsed: 4 * time.Second, Settled: 33},
	}}
	got := r.rate(func(s Sample) int { return s.Settled })
	want := []float64{10, 20, 21 / 1.01, 2 / 1.99}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Errorf("rate[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
