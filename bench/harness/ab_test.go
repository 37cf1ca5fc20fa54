package harness

import (
	"testing"
	"time"
)

// TestInterleaved: both chains make every call, and the summary is of
// their own calls.
func TestInterleaved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts loopback servers")
	}
	var ref, fs Spec
	for _, s := range Specs() {
		switch s.Name {
		case PlainDeadline:
			ref = s
		case "failsoft":
			fs = s
		}
	}
	r, err := Interleaved(ref, fs, DefaultParams(), Loopback, 50)
	if err != nil {
		t.Fatal(err)
	}
	if r.Calls != 50 || r.MedianA <= 0 || r.MedianB <= 0 || r.TrimmedA > r.MeanA || r.TrimmedB > r.MeanB {
		t.Errorf("result %+v", r)
	}
	if _, err := Interleaved(ref, Spec{Name: "broken", Build: func(Params) (*Chain, error) { return nil, ErrPending }}, DefaultParams(), Loopback, 1); err == nil {
		t.Error("a chain that cannot be built: no error")
	}
}

func TestSummary(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 10; i++ {
		d = append(d, time.Duration(11-i)*time.Millisecond) // 10 ms down to 1 ms
	}
	median, mean, trimmed := summary(d)
	if median != 6*time.Millisecond || mean != 5500*time.Microsecond || trimmed != 5*time.Millisecond {
		t.Errorf("summary = %v, %v, %v; want 6ms, 5.5ms, 5ms (the slowest call left out)", median, mean, trimmed)
	}
}
