package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/failsoft/failsoft/cmd/tracewaterfall/waterfall"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tracewaterfall:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("tracewaterfall", flag.ContinueOnError)
	def := os.Getenv("JAEGER_QUERY_URL")
	if def == "" {
		def = "http://127.0.0.1:16686"
	}
	base := fs.String("jaeger", def, "Jaeger query API base URL")
	service := fs.String("service", "", "draw the recent traces of this service")
	limit := fs.Int("limit", 5, "with -service, how many traces")
	file := fs.String("file", "", "draw a saved Jaeger API response (\"-\" reads stdin)")
	var o waterfall.Options
	fs.IntVar(&o.Width, "width", 60, "columns of the time axis")
	fs.BoolVar(&o.ASCII, "ascii", false, "draw with ASCII characters only")
	fs.BoolVar(&o.NoEvents, "no-events", false, "leave out span events")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var traces []waterfall.Trace
	switch {
	case *file != "":
		r := stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		resp, err := waterfall.Decode(r)
		if err != nil {
			return err
		}
		traces = resp.Data
	case *service != "":
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c := &waterfall.Client{Base: *base}
		var err error
		if traces, err = c.Traces(ctx, *service, *limit); err != nil {
			return err
		}
	case fs.NArg() > 0:
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c := &waterfall.Client{Base: *base}
		for _, id := range fs.Args() {
			t, err := c.Trace(ctx, id)
			if err != nil {
				return fmt.Errorf("trace %s: %w", id, err)
			}
			traces = append(traces, *t)
		}
	default:
		fs.Usage()
		return errors.New("give trace IDs, -service or -file")
	}
	if len(traces) == 0 {
		return errors.New("no traces found")
	}
	for i := range traces {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := waterfall.Render(stdout, &traces[i], o); err != nil {
			return err
		}
	}
	return nil
}
