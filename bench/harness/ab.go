package harness

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// ABResult is the time per call of two chains measured call by call in
// alternation (see Interleaved).
type ABResult struct {
	Calls              int // per chain, per pass
	Passes             int // the passes it is the median of (0: one)
	MedianA            time.Duration
	MedianB            time.Duration
	MeanA, MeanB       time.Duration
	TrimmedA, TrimmedB time.Duration // mean without the slowest 10% of calls
}

// Ratio is B's trimmed mean over A's.
func (r ABResult) Ratio() float64 { return float64(r.TrimmedB) / float64(r.TrimmedA) }

// describe says how r was measured.
func (r ABResult) describe() string {
	if r.Passes > 1 {
		return fmt.Sprintf("median of %d passes of %d calls each", r.Passes, r.Calls)
	}
	return fmt.Sprintf("%d calls each", r.Calls)
}

// MedianPass returns the pass of rs, one or more, whose Ratio is the
// median (the lower middle one of an even number), with Passes set to
// len(rs).
func MedianPass(rs []ABResult) ABResult {
	sorted := slices.SortedFunc(slices.Values(rs), func(a, b ABResult) int {
		return cmp.Compare(a.Ratio(), b.Ratio())
	})
	m := sorted[(len(sorted)-1)/2]
	m.Passes = len(rs)
	return m
}

// Interleaved times the Go benchmark m of two chains call by call, one
// call of each in turn (in alternating order), so that a noisy neighbour
// slows both alike: on a shared machine, rounds of whole benchmarks differ
// by more than the few percent being compared.
func Interleaved(a, b Spec, p Params, m Micro, calls int) (ABResult, error) {
	ca, err := newCaller(a, p, m)
	if err != nil {
		return ABResult{}, fmt.Errorf("%s: %w", a.Name, err)
	}
	defer ca.done()
	cb, err := newCaller(b, p, m)
	if err != nil {
		return ABResult{}, fmt.Errorf("%s: %w", b.Name, err)
	}
	defer cb.done()
	ta, tb := make([]time.Duration, 0, calls), make([]time.Duration, 0, calls)
	timed := func(c *caller, into *[]time.Duration) error {
		start := time.Now()
		err := c.call()
		*into = append(*into, time.Since(start))
		return err
	}
	for i := range calls {
		first, second := ca, cb
		fi, si := &ta, &tb
		if i%2 == 1 {
			first, second, fi, si = cb, ca, &tb, &ta
		}
		if err := timed(first, fi); err != nil {
			return ABResult{}, err
		}
		if err := timed(second, si); err != nil {
			return ABResult{}, err
		}
	}
	r := ABResult{Calls: calls}
	r.MedianA, r.MeanA, r.TrimmedA = summary(ta)
	r.MedianB, r.MeanB, r.TrimmedB = summary(tb)
	return r, nil
}

func summary(d []time.Duration) (median, mean, trimmed time.Duration) {
	slices.Sort(d)
	var sum, tsum time.Duration
	keep := len(d) - len(d)/10
	for i, x := range d {
		sum += x
		if i < keep {
			tsum += x
		}
	}
	return d[len(d)/2], sum / time.Duration(len(d)), tsum / time.Duration(keep)
}
