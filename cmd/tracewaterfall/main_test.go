package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestRunFromFileAndStdin(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-ascii", "-file", "waterfall/testdata/retried.json"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "attempt 3 after 20.0ms policy") {
		t.Errorf("output:\n%s", out.String())
	}
	f, err := os.Open("waterfall/testdata/retried.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out.Reset()
	if err := run(context.Background(), []string{"-file", "-", "-no-events"}, f, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "failsoft.backoff") {
		t.Error("-no-events still lists events")
	}
}

func TestRunErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-file", "does-not-exist.json"},
		{"-jaeger", "http://127.0.0.1:1", "abc"},
		{"-bogus"},
	} {
		if err := run(context.Background(), args, nil, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q): no error", args)
		}
	}
}
