package main

import (
	"bytes"
	"context"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	const want = "hello, gopher\nsignature 47514 (signed 1 time)\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}
