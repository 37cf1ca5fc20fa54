package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
)

// Counts of calls for Instructions: each benchmark runs twice, Lo and Hi
// times, and the difference is divided by Hi-Lo, so that what a run does
// once (building the chain, starting the server) cancels out.
var instructionCounts = map[Micro][2]int{
	Interceptors: {1000, 11000},
	Loopback:     {200, 2200},
}

// Valgrind returns the path of valgrind, or "" when it is not installed.
func Valgrind() string {
	p, err := exec.LookPath("valgrind")
	if err != nil {
		return ""
	}
	return p
}

var collected = regexp.MustCompile(`Collected : (\d+)`)

// Instructions measures the user-space instructions per call of the Go
// benchmark m of a chain under valgrind's callgrind, which counts
// instructions, not time: a figure that a busy machine does not move, so
// that a difference of a few percent between two chains can be read from
// one run. The count covers the client and, for Loopback, the server, in
// the same process; it leaves out the kernel (the loopback network) and,
// since the measured process runs with GOGC=off, the garbage collector's
// marking (the allocations themselves are counted). Asynchronous
// preemption is off too.
//
// command and args run a process that makes n calls of the benchmark
// (cmd/report runs itself with -calls).
func Instructions(ctx context.Context, valgrind string, command string, args func(n int) []string, m Micro) (float64, error) {
	counts, ok := instructionCounts[m]
	if !ok {
		return 0, fmt.Errorf("no Go benchmark %q", m)
	}
	var ir [2]uint64
	for i, n := range counts {
		var err error
		for range 3 {
			if ir[i], err = callgrind(ctx, valgrind, command, args(n)); err == nil {
				break
			}
		}
		if err != nil {
			return 0, err
		}
	}
	if ir[1] <= ir[0] {
		return 0, fmt.Errorf("%d calls counted %d instructions, %d calls %d", counts[0], ir[0], counts[1], ir[1])
	}
	return float64(ir[1]-ir[0]) / float64(counts[1]-counts[0]), nil
}

func callgrind(ctx context.Context, valgrind, command string, args []string) (uint64, error) {
	cmd := exec.CommandContext(ctx, valgrind, append([]string{"--tool=callgrind", "--callgrind-out-file=/dev/null", command}, args...)...)
	// Without asynchronous preemption, whose signals callgrind sometimes
	// fails an assertion on.
	cmd.Env = append(os.Environ(), "GOGC=off", "GODEBUG=asyncpreemptoff=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, lastLine(stderr.Bytes()))
	}
	m := collected.FindSubmatch(stderr.Bytes())
	if m == nil {
		return 0, fmt.Errorf("callgrind printed no instruction count: %s", lastLine(stderr.Bytes()))
	}
	return strconv.ParseUint(string(m[1]), 10, 64)
}

func lastLine(b []byte) string {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return string(b)
}
