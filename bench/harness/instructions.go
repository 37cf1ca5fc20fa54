package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// Count is what callgrind measured per call of a Go benchmark.
type Count struct {
	// Instructions per call.
	Instructions float64
	// HotLines is the machine code a call runs: the number of 64-byte
	// lines of code holding an instruction that ran on at least 9 calls
	// in 10; zero when not measured. The CPU fetches code by such lines.
	// Where the code a call runs outgrows the level-1 instruction cache
	// (32 KiB, 512 lines, on common x86 cores), or a loopback call's
	// network path evicts it between calls, each line costs a fetch from
	// a farther cache: the time a chain adds then follows this figure more
	// than its instruction count.
	HotLines int
	// HotByFunction is HotLines by function (a line shared by two
	// functions counts for each).
	HotByFunction map[string]int
}

// HotKiB is HotLines in KiB.
func (c Count) HotKiB() float64 { return float64(c.HotLines) * lineSize / 1024 }

const lineSize = 64

// Instructions measures the user-space instructions per call of the Go
// benchmark m of a chain under valgrind's callgrind, which counts
// instructions, not time: a figure that a busy machine does not move, so
// that a difference of a few percent between two chains can be read from
// one run. The count covers the client and, for Loopback, the server, in
// the same process; it leaves out the kernel (the loopback network) and,
// since the measured process runs with GOGC=off, the garbage collector's
// marking (the allocations themselves are counted). Asynchronous
// preemption is off too. For Interceptors it also measures the hot code
// (Count.HotLines), from callgrind's count of every instruction.
//
// command and args run a process that makes n calls of the benchmark
// (cmd/report runs itself with -calls).
func Instructions(ctx context.Context, valgrind string, command string, args func(n int) []string, m Micro) (Count, error) {
	counts, ok := instructionCounts[m]
	if !ok {
		return Count{}, fmt.Errorf("no Go benchmark %q", m)
	}
	dir, err := os.MkdirTemp("", "failsoft-callgrind-")
	if err != nil {
		return Count{}, err
	}
	defer os.RemoveAll(dir)
	var ir [2]uint64
	var out [2]string
	for i, n := range counts {
		if m == Interceptors {
			out[i] = filepath.Join(dir, fmt.Sprintf("callgrind.%d", i))
		}
		var err error
		for range 3 {
			if ir[i], err = callgrind(ctx, valgrind, command, args(n), out[i]); err == nil {
				break
			}
		}
		if err != nil {
			return Count{}, err
		}
	}
	if ir[1] <= ir[0] {
		return Count{}, fmt.Errorf("%d calls counted %d instructions, %d calls %d", counts[0], ir[0], counts[1], ir[1])
	}
	c := Count{Instructions: float64(ir[1]-ir[0]) / float64(counts[1]-counts[0])}
	if m == Interceptors {
		var per [2]map[uint64]instrCount
		for i := range out {
			if per[i], err = readInstrCounts(out[i]); err != nil {
				return Count{}, err
			}
		}
		c.HotLines, c.HotByFunction = hotLines(per[0], per[1], counts[1]-counts[0])
	}
	return c, nil
}

// callgrind runs command under callgrind and returns the instructions it
// counted. With out set, callgrind writes the count of every instruction
// there.
func callgrind(ctx context.Context, valgrind, command string, args []string, out string) (uint64, error) {
	vargs := []string{"--tool=callgrind", "--callgrind-out-file=/dev/null"}
	if out != "" {
		vargs = []string{"--tool=callgrind", "--callgrind-out-file=" + out,
			"--dump-instr=yes", "--compress-strings=no", "--compress-pos=no"}
	}
	cmd := exec.CommandContext(ctx, valgrind, append(append(vargs, command), args...)...)
	// Without asynchronous preemption, whose signals callgrind sometimes
	// fails an assertion on, and without RDTSCP, which the runtime reads
	// the clock with where the CPU has it and valgrind 3.19 cannot run.
	cmd.Env = append(os.Environ(), "GOGC=off", "GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off")
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

// instrCount is how many times an instruction ran, and its function.
type instrCount struct {
	n  uint64
	fn string
}

// readInstrCounts reads the count of every instruction from a callgrind
// output file written with --dump-instr=yes and without compression.
// Each cost line is "address line count"; the line after a calls= line
// is a call's inclusive cost, not the instruction's own, and is skipped.
func readInstrCounts(path string) (map[uint64]instrCount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[uint64]instrCount{}
	var fn string
	var last uint64
	skip := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "fn="):
			fn = line[len("fn="):]
			continue
		case strings.HasPrefix(line, "calls="):
			skip = true
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		var addr uint64
		switch a := fields[0]; {
		case strings.HasPrefix(a, "0x"):
			v, err := strconv.ParseUint(a[2:], 16, 64)
			if err != nil {
				continue
			}
			addr = v
		case a == "*":
			addr = last
		case a[0] == '+' || a[0] == '-':
			v, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				continue
			}
			addr = uint64(int64(last) + v)
		default:
			continue // not a cost line
		}
		last = addr
		if skip {
			skip = false
			continue
		}
		n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: cost line %q", path, line)
		}
		c := counts[addr]
		c.n += n
		c.fn = fn
		counts[addr] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("%s: no instruction counts", path)
	}
	return counts, nil
}

// hotLines counts the lines of code holding an instruction that ran at
// least 0.9*calls times more in hi than in lo, in all and by function.
func hotLines(lo, hi map[uint64]instrCount, calls int) (int, map[string]int) {
	lines := map[uint64]bool{}
	byFn := map[string]map[uint64]bool{}
	for addr, c := range hi {
		if float64(c.n-min(c.n, lo[addr].n)) < 0.9*float64(calls) {
			continue
		}
		l := addr / lineSize
		lines[l] = true
		if byFn[c.fn] == nil {
			byFn[c.fn] = map[uint64]bool{}
		}
		byFn[c.fn][l] = true
	}
	per := make(map[string]int, len(byFn))
	for fn, ls := range byFn {
		per[fn] = len(ls)
	}
	return len(lines), per
}

func lastLine(b []byte) string {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return string(b)
}
