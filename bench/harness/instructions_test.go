package harness

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeCallgrind is a stand-in for valgrind that reports 5000 instructions
// of setup and 7 per call, and, when asked for an output file, writes one
// in callgrind's format in which, per call, function f runs instructions
// at 0x1000 and 0x1004 (one line of code) and 0x1040 (a second line), and
// function g runs 0x2000 and calls f (a call's cost line, which is not
// g's own); 0x3000 runs once, at setup, and 0x4000 on one call in two.
const fakeCallgrind = `#!/bin/sh
out=
for a; do
	case $a in --callgrind-out-file=*) out=${a#--callgrind-out-file=};; esac
	n=$a
done
echo "==1== Collected : $((5000 + 7 * n))" >&2
[ "$out" = /dev/null ] && exit 0
cat > "$out" <<EOF
version: 1
positions: instr line
events: Ir
fl=prog.go
fn=f
0x1000 10 $n
+4 11 $n
0x1040 12 $n
0x3000 13 1
0x4000 14 $((n / 2))
fn=g
0x2000 20 $n
cfn=f
calls=$n 0x1000 10
0x2040 21 $((4 * n))
EOF
`

// TestInstructionsArithmetic runs Instructions against fakeCallgrind: the
// setup must cancel out, and the hot code counts the lines that run on
// every call.
func TestInstructionsArithmetic(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "valgrind")
	if err := os.WriteFile(fake, []byte(fakeCallgrind), 0o755); err != nil {
		t.Fatal(err)
	}
	args := func(n int) []string { return []string{"-n", strconv.Itoa(n)} }
	for _, tc := range []struct {
		m     Micro
		lines int
		byFn  map[string]int
	}{
		{Interceptors, 3, map[string]int{"f": 2, "g": 1}},
		{Loopback, 0, nil},
	} {
		got, err := Instructions(context.Background(), fake, "prog", args, tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if got.Instructions != 7 {
			t.Errorf("%s: %v instructions per call, want 7", tc.m, got.Instructions)
		}
		if got.HotLines != tc.lines || !maps.Equal(got.HotByFunction, tc.byFn) {
			t.Errorf("%s: %d hot lines %v, want %d %v", tc.m, got.HotLines, got.HotByFunction, tc.lines, tc.byFn)
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
