package waterfall

import (
	"fmt"
	"strings"
	"testing"
)

// The fixture laid out: the call, then each attempt with its server span
// under it, the retries' backoffs as lead-ins ending where they start, the
// call's events on the axis.
func TestNewLayout(t *testing.T) {
	l := NewLayout(&fixture(t).Data[0])
	if l.Name != "failsoft.policytest.v1.PlainService/Plain" || l.Total < 33_350 || l.Total >= 33_450 { // 33.4ms
		t.Errorf("layout %q over %dµs", l.Name, l.Total)
	}
	var got []string
	for _, r := range l.Rows {
		got = append(got, fmt.Sprintf("%d %s %s %s", r.Depth, r.Service, r.Label, r.Result))
		if r.Start-r.Backoff < 0 || r.Start+r.Duration > l.Total {
			t.Errorf("row %q runs off the axis: %d-%d..%d of %d", r.Label, r.Backoff, r.Start, r.Start+r.Duration, l.Total)
		}
	}
	want := []string{
		"0 failsoft-e2e-client PlainService/Plain OK",
		"1 failsoft-e2e-client attempt 1 UNAVAILABLE",
		"2 failsoft-e2e-server PlainService/Plain UNAVAILABLE",
		"1 failsoft-e2e-client attempt 2 after 10.0ms policy UNAVAILABLE",
		"2 failsoft-e2e-server PlainService/Plain UNAVAILABLE",
		"1 failsoft-e2e-client attempt 3 after 20.0ms policy OK",
		"2 failsoft-e2e-server PlainService/Plain OK",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if b := l.Rows[3].Backoff; b != 10_000 {
		t.Errorf("attempt 2 backoff %dµs, want 10000", b)
	}
	var events []string
	for _, e := range l.Rows[0].Events {
		events = append(events, e.Name)
		if e.At < 0 || e.At > l.Total || !strings.HasPrefix(e.Text, e.Name) {
			t.Errorf("event %+v: off the axis or text without its name", e)
		}
	}
	if strings.Join(events, " ") != "failsoft.idempotency.key_attached failsoft.backoff failsoft.backoff" {
		t.Errorf("call events %q", events)
	}
	if e := NewLayout(&Trace{TraceID: "x"}); len(e.Rows) != 0 || e.Total != 1 {
		t.Errorf("empty trace laid out as %+v", e)
	}
}
