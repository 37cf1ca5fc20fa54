package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "failsoft-proto:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("failsoft-proto", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "write nothing; fail when DIR's copy is missing or differs")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: failsoft-proto [-check] DIR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want exactly one directory")
	}
	path := filepath.Join(fs.Arg(0), filepath.FromSlash(failsoftv1.OptionsProtoPath))
	want := failsoftv1.OptionsProto()
	if *check {
		got, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%w (run failsoft-proto %s)", err, fs.Arg(0))
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s differs from the options of the linked failsoft module (run failsoft-proto %s)", path, fs.Arg(0))
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, want, 0o644)
}
