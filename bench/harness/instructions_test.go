package harness

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestInstructionsArithmetic runs Instructions against a stand-in for
// valgrind that reports 5000 instructions of setup and 7 per call: the
// setup must cancel out.
func TestInstructionsArithmetic(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "valgrind")
	script := "#!/bin/sh\nfor a; do n=$a; done\necho \"==1== Collected : $((5000 + 7 * n))\" >&2\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := func(n int) []string { return []string{"-n", strconv.Itoa(n)} }
	for _, m := range []Micro{Interceptors, Loopback} {
		got, err := Instructions(context.Background(), fake, "prog", args, m)
		if err != nil {
			t.Fatal(err)
		}
		if got != 7 {
			t.Errorf("%s: %v instructions per call, want 7", m, got)
		}
	}

	silent := filepath.Join(t.TempDir(), "valgrind")
	if err := os.WriteFile(silent, []byte("#!/bin/sh\necho crashed >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Instructions(context.Background(), silent, "prog", args, Loopback); err == nil || !strings.Contains(err.Error(), "no instruction count") {
		t.Errorf("a run without a count: %v", err)
	}
}

// TestCalls: the calls that -instructions counts run, and name what they
// cannot.
func TestCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a loopback server")
	}
	p := DefaultParams()
	for _, m := range []Micro{Interceptors, Loopback} {
		if err := Calls("failsoft", p, m, 3); err != nil {
			t.Errorf("failsoft, %s: %v", m, err)
		}
	}
	if err := Calls("grpc-go built-in retry", p, Interceptors, 1); err == nil {
		t.Error("interceptor calls of a chain without interceptors: no error")
	}
	if err := Calls("no such chain", p, Loopback, 1); err == nil {
		t.Error("an unknown chain: no error")
	}
}
