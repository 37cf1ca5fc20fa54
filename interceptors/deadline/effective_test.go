package deadline

import (
	"strings"
	"testing"
	"time"
)

func TestEffective(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		name      string
		caller    time.Duration // from now; ignored when !hasCaller
		hasCaller bool
		timeout   time.Duration
		want      time.Duration
		src       Source
	}{
		{"nothing: default", 0, false, 0, 10 * time.Second, FromDefault},
		{"policy only", 0, false, 2 * time.Second, 2 * time.Second, FromPolicy},
		{"caller only, later than default", time.Minute, true, 0, time.Minute, FromCaller},
		{"caller earlier than policy", time.Second, true, 2 * time.Second, time.Second, FromCaller},
		{"policy earlier than caller", 5 * time.Second, true, 2 * time.Second, 2 * time.Second, FromPolicy},
		{"equal: caller kept", 2 * time.Second, true, 2 * time.Second, 2 * time.Second, FromCaller},
		{"caller already passed", -time.Second, true, 2 * time.Second, -time.Second, FromCaller},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, src := effective(now, now.Add(tt.caller), tt.hasCaller, tt.timeout, 10*time.Second)
			if d := got.Sub(now); d != tt.want || src != tt.src {
				t.Errorf("effective = now%+v from %v, want now%+v from %v", d, src, tt.want, tt.src)
			}
		})
	}
}

// FuzzEffective checks the invariants of deadline selection for any
// combination of caller deadline, policy timeout and default.
func FuzzEffective(f *testing.F) {
	f.Add(int64(0), int64(time.Second), true, int64(2*time.Second), int64(10*time.Second))
	f.Add(int64(0), int64(0), false, int64(0), int64(10*time.Second))
	f.Add(int64(5), int64(-time.Second), true, int64(time.Millisecond), int64(1))
	f.Fuzz(func(t *testing.T, nowNs, callerNs int64, hasCaller bool, timeoutNs, defNs int64) {
		if defNs <= 0 {
			defNs = 1 // New refuses non-positive defaults
		}
		now := time.Unix(0, nowNs)
		caller := now.Add(time.Duration(callerNs))
		timeout, def := time.Duration(timeoutNs), time.Duration(defNs)
		got, src := effective(now, caller, hasCaller, timeout, def)
		if hasCaller && got.After(caller) {
			t.Fatalf("extended the caller's deadline: %v > %v", got, caller)
		}
		if timeout > 0 && got.After(now.Add(timeout)) {
			t.Fatalf("later than the policy timeout: %v > %v", got, now.Add(timeout))
		}
		switch src {
		case FromCaller:
			if !hasCaller || !got.Equal(caller) {
				t.Fatalf("source caller but deadline %v, caller %v (%v)", got, caller, hasCaller)
			}
		case FromPolicy:
			if timeout <= 0 || !got.Equal(now.Add(timeout)) {
				t.Fatalf("source policy but deadline %v, timeout %v", got, timeout)
			}
		case FromDefault:
			if hasCaller || timeout > 0 || !got.Equal(now.Add(def)) {
				t.Fatalf("source default with caller=%v timeout=%v", hasCaller, timeout)
			}
		default:
			t.Fatalf("no source")
		}
	})
}

func TestFailFastMessage(t *testing.T) {
	m := failFastMessage("/p.S/M", 12*time.Millisecond, 50*time.Millisecond)
	for _, want := range []string{"12ms of budget left", "/p.S/M", "the minimum is 50ms", "not sent"} {
		if !strings.Contains(m, want) {
			t.Errorf("message %q lacks %q", m, want)
		}
	}
	m = failFastMessage("/p.S/M", -3*time.Millisecond, 0)
	for _, want := range []string{"no budget left", "passed 3ms ago", "the minimum is 0s"} {
		if !strings.Contains(m, want) {
			t.Errorf("message %q lacks %q", m, want)
		}
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{FromCaller: "caller", FromPolicy: "policy", FromDefault: "default", 0: "unknown"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}
