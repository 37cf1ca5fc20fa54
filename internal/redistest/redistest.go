package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string

	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// RequireEnv, when set to a non-empty value, makes a missing redis-server
// fail the test instead of skipping it, so that CI cannot pass without
// running the Redis tests.
const RequireEnv = "FAILSOFT_REQUIRE_REDIS"

// Start starts redis-server on a free 127.0.0.1 port, without persistence,
// and stops it when the test ends, passed or failed. It skips the test when
// redis-server is not installed (Debian package redis-server), unless
// RequireEnv is set.
func Start(t testing.TB) *Server {
	t.Helper()
	return startOne(t, lookPath(t, "redis-server"))
}

// lookPath finds a Redis program, skipping the test (or failing it, with
// RequireEnv set) when it is not installed.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		msg := name + " is not installed (apt-get install redis-server)"
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%s, and %s is set", msg, RequireEnv)
		}
		t.Skip(msg + "; skipping the Redis test")
	}
	return bin
}

func startOne(t testing.TB, bin string, args ...string) *Server {
	t.Helper()
	var last error
	// A free port found by listening can be taken by someone else before
	// redis binds it; then try another.
	for range 3 {
		s, err := start(t, bin, args...)
		if err == nil {
			return s
		}
		last = err
	}
	t.Fatalf("redistest: %v", last)
	return nil
}

// Cluster is a running Redis Cluster of masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// Addrs returns the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// StartCluster starts a Redis Cluster of n masters (at least 3) on free
// 127.0.0.1 ports, with the hash slots spread over them, and stops it when
// the test ends. It skips the test as Start does, and needs redis-cli too.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: a cluster needs at least 3 masters, not %d", n)
	}
	bin, cli := lookPath(t, "redis-server"), lookPath(t, "redis-cli")
	c := &Cluster{}
	for range n {
		// Each node keeps its cluster state file in a directory of its own.
		c.Nodes = append(c.Nodes, startOne(t, bin, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000", "--dir", t.TempDir()))
	}
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, c.Addrs()...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redistest: creating the cluster: %v: %s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, node := range c.Nodes {
		for {
			info, err := exec.Command(cli, "-h", "127.0.0.1", "-p", node.port(), "cluster", "info").Output()
			if err == nil && bytes.Contains(info, []byte("cluster_state:ok")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: node %s not in a working cluster after 20s: %v: %s", node.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func (s *Server) port() string {
	_, port, _ := net.SplitHostPort(s.Addr)
	return port
}

func start(t testing.TB, bin string, args ...string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}, args...)...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(s.Addr); err == nil {
			break
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("redis-server exited at start: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s not ready after 10s: %s", s.Addr, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(s.stop)
	return s, nil
}

// Stop kills the server and waits for it to exit; the test's cleanup does
// it anyway. Tests call it to see how clients behave when Redis is gone.
func (s *Server) Stop() { s.stop() }

func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func ping(addr string) error {
	line, err := command(addr, "PING")
	if err != nil {
		return err
	}
	if line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Keys returns the number of keys the server holds in database 0.
func (s *Server) Keys() (int, error) {
	line, err := command(s.Addr, "DBSIZE")
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(line, ":")
	if !ok {
		return 0, fmt.Errorf("DBSIZE answered %q", line)
	}
	return strconv.Atoi(n)
}

// command sends one inline command and returns the first line of the
// answer, without its line end.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
