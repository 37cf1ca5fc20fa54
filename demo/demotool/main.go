package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demotool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: demotool ports N | demotool ok URL")
	}
	switch args[0] {
	case "ports":
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("ports: N must be 1 to 64, got %q", args[1])
		}
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for range n {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
		}
		return nil
	case "ok":
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(args[1])
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", args[1], resp.Status)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}
