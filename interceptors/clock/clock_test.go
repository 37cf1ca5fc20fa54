package clock_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/failsoft/failsoft/interceptors/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFakeFiresInOrder(t *testing.T) {
	start := time.Unix(1000, 0)
	f := clock.NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	c := f.NewTimer(3 * time.Second)
	if c.Stop() != true || c.Stop() != false {
		t.Fatal("Stop must report true once, then false")
	}
	tests := []struct {
		step    time.Duration
		aFired  bool
		bFired  bool
		pending int
	}{
		{500 * time.Millisecond, false, false, 2},
		{500 * time.Millisecond, false, true, 1},
		{time.Second, true, true, 0},
	}
	var aDone, bDone bool
	for i, tc := range tests {
		f.Advance(tc.step)
		select {
		case <-a.C():
			aDone = true
		default:
		}
		select {
		case <-b.C():
			bDone = true
		default:
		}
		if aDone != tc.aFired || bDone != tc.bFired || f.Timers() != tc.pending {
			t.Fatalf("step %d: a=%v b=%v pending=%d", i, aDone, bDone, f.Timers())
		}
	}
	if got := f.Now(); !got.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("Now = %v", got)
	}
	if a.Stop() {
		t.Fatal("Stop on a fired timer must report false")
	}
}

func TestFakeBlockUntil(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-f.NewTimer(time.Minute).C()
	}()
	f.BlockUntil(1)
	f.Advance(time.Minute)
	<-done
}

func TestZeroTimerFiresAtOnce(t *testing.T) {
	f := clock.NewFake(time.Unix(0, 0))
	select {
	case <-f.NewTimer(0).C():
	default:
		t.Fatal("a zero timer must fire at once")
	}
}

func TestSystem(t *testing.T) {
	c := clock.OrSystem(nil)
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Fatal("Stop on a pending system timer must report true")
	}
	if c.Now().IsZero() {
		t.Fatal("zero time")
	}
}
