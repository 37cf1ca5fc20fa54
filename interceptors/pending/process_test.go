package pending_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
	"github.com/failsoft/failsoft/interceptors/pending/redisstore"
	"github.com/failsoft/failsoft/interceptors/policy"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// The client process of TestExactlyOnce is this test binary run again as
// TestClientProcess, with its configuration in the environment. It reads
// commands from stdin, one a line: "<virtual time, Unix ns> <verb> <args>":
//
//	charge I KEY   make charge I with idempotency key KEY
//	drain          one drain pass (DrainOnce)
//	letters        list the store's dead letters
//	quit           exit
//
// and reports on stdout, each line written before the next step starts,
// so that what the parent read before a SIGKILL is what happened:
//
//	ready
//	answered I ok|pending|declined
//	settled KEY               (OnSettled)
//	dead KEY "REASON"         (OnDead)
//	drained SETTLED RETRY DEAD DEPTH
//	letter KEY "REASON" ... letters N
//	error MESSAGE             (then it exits)
const clientEnv = "PENDING_CLIENT_PROCESS"

// clientConfig is a client process's configuration: where the server is,
// which store it opens, and its clock's start.
type clientConfig struct {
	Server   string
	Bolt     string // the bbolt file, or
	Redis    string // the redis-server address
	Consumer string // its name in the Redis consumer group
	Start    int64  // Unix ns
}

// The drainer's settings, in both processes.
const (
	drainBatch = 64
	drainLease = time.Minute
)

func TestClientProcess(t *testing.T) {
	env := os.Getenv(clientEnv)
	if env == "" {
		t.Skip("the client process of TestExactlyOnce")
	}
	// Bounded even if the parent forgets it: a stuck child must not outlive
	// the test run.
	time.AfterFunc(2*time.Minute, func() {
		fmt.Fprintln(os.Stderr, "client process: still running after 2 minutes")
		os.Exit(3)
	})
	if err := runClient(env, os.Stdin, os.Stdout); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func runClient(env string, in io.Reader, out io.Writer) error {
	var cfg clientConfig
	if err := json.Unmarshal([]byte(env), &cfg); err != nil {
		return err
	}
	ctx := context.Background()
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	var store pending.Store
	if cfg.Bolt != "" {
		s, err := boltstore.Open(cfg.Bolt)
		if err != nil {
			return err
		}
		store = s
	} else {
		rc := redis.NewClient(&redis.Options{Addr: cfg.Redis, MaxRetries: -1, DialTimeout: time.Second})
		s, err := redisstore.New(rc, redisstore.WithQueue("checkout"), redisstore.WithConsumer(cfg.Consumer))
		if err != nil {
			return err
		}
		store = s
	}
	clk := clock.NewFake(time.Unix(0, cfg.Start))
	q, err := pending.New(store, pending.ForMethods(keyedWrite), pending.WithClock(clk),
		pending.WithRand(func() float64 { return 0.5 }), pending.WithDrain(time.Second, drainBatch, drainLease),
		pending.OnSettled(func(_ context.Context, s pending.Settled) { say("settled %s", s.Key) }),
		pending.OnDead(func(_ context.Context, d pending.Dead) { say("dead %s %q", d.Key, d.Reason) }))
	if err != nil {
		return err
	}
	// The test method skips the breaker by its proto options; a payment
	// service's charges would not, so the breaker is put back in front.
	resolver, err := policy.New(policy.WithMethod(keyedWrite, &failsoftv1.MethodPolicy{SkipCircuitBreaker: proto.Bool(false)}))
	if err != nil {
		return err
	}
	suite, err := failsoft.DialOptions(failsoft.WithClock(clk), failsoft.WithResolver(resolver), failsoft.WithoutRetry(), failsoft.WithoutThrottle(),
		failsoft.WithBreaker(breaker.ConsecutiveFailures(3), breaker.OpenFor(10*time.Second, 20*time.Second),
			breaker.WithRand(func() float64 { return 0.5 })))
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.Server, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(q.UnaryClientInterceptor())}, suite...)...)
	if err != nil {
		return err
	}
	api := policytestv1.NewTunedServiceClient(conn)
	say("ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			return fmt.Errorf("command %q", sc.Text())
		}
		at, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("command %q: %w", sc.Text(), err)
		}
		if d := time.Unix(0, at).Sub(clk.Now()); d > 0 {
			clk.Advance(d)
		}
		switch verb, args := f[1], f[2:]; {
		case verb == "charge" && len(args) == 2:
			i, _ := strconv.Atoi(args[0])
			_, err := api.KeyedWrite(idempotency.WithKey(ctx, args[1]), &policytestv1.PingRequest{Payload: charge(i)})
			var d *pending.Deferred
			switch {
			case err == nil:
				say("answered %d ok", i)
			case errors.As(err, &d):
				say("answered %d pending", i)
			case status.Code(err) == codes.InvalidArgument:
				say("answered %d declined", i)
			default:
				return fmt.Errorf("%s: %w", charge(i), err)
			}
		case verb == "drain":
			r, err := q.DrainOnce(ctx, conn)
			if err != nil {
				return err
			}
			st, err := store.Stats(ctx)
			if err != nil {
				return err
			}
			say("drained %d %d %d %d", r.Settled, r.Retry, r.Dead, st.Depth)
		case verb == "letters":
			ds, err := store.DeadLetters(ctx, 0)
			if err != nil {
				return err
			}
			for _, d := range ds {
				say("letter %s %q", d.Key, d.Reason)
			}
			say("letters %d", len(ds))
		case verb == "quit":
			return nil
		default:
			return fmt.Errorf("command %q", sc.Text())
		}
	}
	return sc.Err() // stdin closed: the parent is gone
}

// charge is the payload of charge i; every 25th is declined by the
// service for good.
func charge(i int) string {
	if i%25 == 11 {
		return fmt.Sprintf("charge-%04d:decline", i)
	}
	return fmt.Sprintf("charge-%04d", i)
}

// client is the parent's handle on a client process.
type client struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string   // its stdout, closed when it ends
	read   chan struct{} // closed when the reader of its stdout returned
	stderr *os.File      // kept in the test's directory
	ev     *ledger
	once   sync.Once
}

// ledger is what the client processes reported, across their lives.
type ledger struct {
	settledBy map[string][]string // key -> the processes whose OnSettled heard it
	dead      map[string]string   // key -> reason, as OnDead heard it
}

// stderrText returns what the process wrote to stderr so far.
func (c *client) stderrText() string {
	b, _ := os.ReadFile(c.stderr.Name())
	return string(b)
}

// lineWait bounds the wait for one line of a client process: a guard
// against a hang, not a measure.
const lineWait = 30 * time.Second

// startClient starts a client process and waits for it to be ready. It is
// killed when the test ends, passed or failed.
func startClient(t *testing.T, name string, cfg clientConfig, ev *ledger) *client {
	t.Helper()
	env, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), clientEnv+"="+string(env))
	stderr, err := os.Create(filepath.Join(t.TempDir(), name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stderr.Close() })
	c := &client{t: t, name: name, cmd: cmd, lines: make(chan string, 4096), read: make(chan struct{}), stderr: stderr, ev: ev}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.read)
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(c.kill)
	if f := c.next(); f[0] != "ready" {
		t.Fatalf("%s: %q, want ready", name, f)
	}
	return c
}

// do sends a command at virtual time at.
func (c *client) do(at time.Time, cmd string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.stdin, "%d %s\n", at.UnixNano(), fmt.Sprintf(cmd, args...)); err != nil {
		c.t.Fatalf("%s: %v; stderr: %s", c.name, err, c.stderrText())
	}
}

// next returns the fields of the next line that is not an event; events
// go to the ledger on the way.
func (c *client) next() []string {
	c.t.Helper()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("%s ended; stderr: %s", c.name, c.stderrText())
			}
			f, err := c.record(l)
			if err != nil {
				c.t.Fatal(err)
			}
			if f != nil {
				return f
			}
		case <-time.After(lineWait):
			c.t.Fatalf("%s: no answer in %v; stderr: %s", c.name, lineWait, c.stderrText())
		}
	}
}

// record puts an event line in the ledger and returns nil, or returns
// the fields of any other line.
func (c *client) record(l string) ([]string, error) {
	f := strings.Fields(l)
	switch {
	case len(f) == 0:
		return nil, fmt.Errorf("%s: empty line", c.name)
	case f[0] == "error":
		return nil, fmt.Errorf("%s: %s; stderr: %s", c.name, l, c.stderrText())
	case f[0] == "settled" && len(f) == 2:
		c.ev.settledBy[f[1]] = append(c.ev.settledBy[f[1]], c.name)
		return nil, nil
	case f[0] == "dead" && len(f) >= 3:
		reason, err := strconv.Unquote(strings.TrimPrefix(l, "dead "+f[1]+" "))
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", c.name, l, err)
		}
		c.ev.dead[f[1]] = reason
		return nil, nil
	}
	return f, nil
}

// end records what the process reported before it ended and waits for
// it; wantExit says whether it was asked to exit, rather than killed.
func (c *client) end(wantExit bool) {
	for l := range c.lines {
		if _, err := c.record(l); err != nil {
			c.t.Error(err)
		}
	}
	<-c.read
	if err := c.cmd.Wait(); wantExit && err != nil {
		c.t.Errorf("%s: %v; stderr: %s", c.name, err, c.stderrText())
	}
	if strings.Contains(c.stderrText(), "DATA RACE") {
		c.t.Errorf("%s: %s", c.name, c.stderrText())
	}
}

// kill ends the process with SIGKILL, records the events it reported
// before it died, and waits for it. Killing it twice does nothing.
func (c *client) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Kill()
		c.end(false)
	})
}

// quit asks the process to exit and waits for it.
func (c *client) quit(at time.Time) {
	c.do(at, "quit")
	c.once.Do(func() { c.end(true) })
}
