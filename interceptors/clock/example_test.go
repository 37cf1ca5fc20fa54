package clock_test

import (
	"fmt"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
)

// A test drives time with a Fake: timers fire when Advance passes them,
// never by sleeping.
func ExampleFake() {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t := fc.NewTimer(100 * time.Millisecond)
	fc.Advance(50 * time.Millisecond)
	select {
	case <-t.C():
		fmt.Println("fired early")
	default:
		fmt.Println("not yet at", fc.Now().Format("15:04:05.000"))
	}
	fc.Advance(50 * time.Millisecond)
	<-t.C()
	fmt.Println("fired at", fc.Now().Format("15:04:05.000"))
	// Output:
	// not yet at 00:00:00.050
	// fired at 00:00:00.100
}
