package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

func TestWriteThenCheck(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if err := run([]string{"-check", dir}, &stderr); err == nil {
		t.Fatal("-check passed before the file was written")
	}
	if err := run([]string{dir}, &stderr); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "failsoft", "v1", "options.proto")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("..", "..", "proto", "failsoft", "v1", "options.proto"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src) || !bytes.Equal(got, failsoftv1.OptionsProto()) {
		t.Fatal("written file differs from proto/failsoft/v1/options.proto")
	}
	if err := run([]string{"-check", dir}, &stderr); err != nil {
		t.Fatalf("-check after writing: %v", err)
	}
	if err := os.WriteFile(path, append(got, "// edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-check", dir}, &stderr); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("-check of an edited copy: %v, want a difference", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"a", "b"}, {"-bogus", "a"}} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
