package retry

import (
	"math"
	"time"
)

// backoff returns the full-jitter wait before retry n (n = 1 for the second
// attempt): a uniform draw from [0, min(max, initial * multiplier^(n-1))).
// r is a uniform number in [0, 1).
func backoff(initial, max time.Duration, multiplier float64, n int, r float64) time.Duration {
	if n < 1 {
		n = 1
	}
	ceiling := float64(initial) * math.Pow(multiplier, float64(n-1))
	if ceiling > float64(max) || math.IsNaN(ceiling) || math.IsInf(ceiling, 0) {
		ceiling = float64(max)
	}
	if !(r >= 0) { // also catches NaN
		r = 0
	} else if r >= 1 {
		r = math.Nextafter(1, 0)
	}
	return time.Duration(ceiling * r)
}
