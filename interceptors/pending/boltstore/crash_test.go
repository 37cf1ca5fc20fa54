package boltstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
)

// The crash tests run the test binary again as a child that works on the
// store until the parent kills it with SIGKILL. The child reports on stdout
// each step after the store returned from it.
const (
	childEnv = "BOLTSTORE_CRASH_CHILD" // the mode: "held" or "loop"
	pathEnv  = "BOLTSTORE_CRASH_PATH"
)

var t0 = time.Unix(1_800_000_000, 0)

func TestCrashChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run by the crash tests")
	}
	s, err := boltstore.Open(os.Getenv(pathEnv), boltstore.WithMaxEntries(100_000))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx := context.Background()
	step := func(what, key string, err error) {
		if err != nil {
			fmt.Println("error", what, key, err)
			os.Exit(2)
		}
		fmt.Println(what, key)
	}
	switch mode {
	case "held":
		// 20 added, 10 claimed, 5 of those acked, then wait to be killed.
		for i := range 20 {
			k := fmt.Sprintf("k%02d", i)
			step("added", k, s.Add(ctx, pending.Entry{Key: k, Method: "/p.S/M", Request: []byte(k), Enqueued: t0, NotBefore: t0}))
		}
		es, err := s.Claim(ctx, t0, time.Minute, 10)
		step("claimed", fmt.Sprint(len(es)), err)
		for _, e := range es[:5] {
			step("acked", e.Key, s.Settle(ctx, e.Key))
		}
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	case "loop":
		// Add, claim, and ack every other entry, until killed.
		for i := range 100_000 {
			k := fmt.Sprintf("k%06d", i)
			at := t0.Add(time.Duration(i) * time.Millisecond)
			step("added", k, s.Add(ctx, pending.Entry{Key: k, Method: "/p.S/M", Request: []byte(k), Enqueued: at, NotBefore: at}))
			es, err := s.Claim(ctx, at, time.Hour, 1)
			if err != nil || len(es) != 1 {
				step("claim", k, fmt.Errorf("claimed %d: %v", len(es), err))
			}
			if i%2 == 0 {
				step("acked", es[0].Key, s.Settle(ctx, es[0].Key))
			}
		}
	}
	os.Exit(0)
}

// runChild starts the child in mode on path and returns its stdout lines
// up to (and including) the first line for which stop reports true; then
// it kills the child.
func runChild(t *testing.T, mode, path string, stop func(line string) bool) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, pathEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }() // also when the test fails
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
		lines = append(lines, line)
		if stop(line) {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			return lines
		}
	}
	t.Fatalf("child ended before it was killed: %v; output %q", sc.Err(), lines)
	return nil
}

func TestCrashBetweenClaimAndAck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending.db")
	runChild(t, "held", path, func(l string) bool { return l == "ready" })
	s := open(t, path, 100)
	ctx := context.Background()
	st, err := s.Stats(ctx)
	if err != nil || st.Depth != 15 || !st.Oldest.Equal(t0) {
		t.Fatalf("after the crash: %+v, %v; want the 15 entries not acked", st, err)
	}
	// The 10 never claimed are due at once; the 5 claimed but not acked
	// come back when their lease ends, not before.
	es, err := s.Claim(ctx, t0.Add(59*time.Second), time.Hour, 100)
	if err != nil || len(es) != 10 {
		t.Fatalf("before the lease ends: %d entries claimable, %v; want 10", len(es), err)
	}
	es, err = s.Claim(ctx, t0.Add(time.Minute), time.Hour, 100)
	if err != nil || len(es) != 5 {
		t.Fatalf("after the lease: %d entries claimable, %v; want the 5 claimed before the crash", len(es), err)
	}
	for _, e := range es {
		if string(e.Request) != e.Key {
			t.Fatalf("entry %s came back with request %q", e.Key, e.Request)
		}
	}
}

func TestCrashAtAnyMoment(t *testing.T) {
	for _, killAfter := range []int{1, 7, 40} {
		t.Run(fmt.Sprint(killAfter), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pending.db")
			added := 0
			lines := runChild(t, "loop", path, func(l string) bool {
				if strings.HasPrefix(l, "added ") {
					added++
				}
				return added == killAfter
			})
			state := map[string]string{} // key -> last step reported
			for _, l := range lines {
				what, key, _ := strings.Cut(l, " ")
				state[key] = what
			}
			s := open(t, path, 100_000)
			ctx := context.Background()
			es, err := s.Claim(ctx, t0.Add(1000*time.Hour), time.Hour, 1_000_000)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, e := range es {
				got[e.Key] = true
			}
			for k, what := range state {
				// Odd entries are never acked; the child may have acked an
				// even one after its last report.
				var i int
				if _, err := fmt.Sscanf(k, "k%d", &i); err != nil {
					continue
				}
				if what == "added" && i%2 == 1 && !got[k] {
					t.Errorf("%s was added and never acked, and is lost", k)
				}
				if what == "acked" && got[k] {
					t.Errorf("%s was acked, and is back", k)
				}
			}
			if st, _ := s.Stats(ctx); st.Depth != len(es) {
				t.Errorf("depth %d, but %d entries in the file", st.Depth, len(es))
			}
		})
	}
}
