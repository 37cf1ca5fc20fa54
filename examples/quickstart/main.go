// Command quickstart is failsoft in a project of its own: a service whose
// proto imports failsoft's method options, served and called on loopback
// through failsoft's server and client suites.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/idempotency"

	greetv1 "example.com/quickstart/gen/greet/v1"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// greeter fails each name's first Greet, so that the client's retry shows,
// and signs each Sign request it runs.
type greeter struct {
	greetv1.UnimplementedGreetServiceServer
	mu    sync.Mutex
	seen  map[string]bool
	signs int
}

func (g *greeter) Greet(_ context.Context, req *greetv1.GreetRequest) (*greetv1.GreetResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.seen[req.GetName()] {
		g.seen[req.GetName()] = true
		return nil, status.Error(codes.Unavailable, "warming up")
	}
	return &greetv1.GreetResponse{Greeting: "hello, " + req.GetName()}, nil
}

func (g *greeter) Sign(_ context.Context, req *greetv1.SignRequest) (*greetv1.SignResponse, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.signs++
	return &greetv1.SignResponse{Signature: int64(len(req.GetName()) * 7919)}, nil
}

func run(ctx context.Context, out io.Writer) error {
	// Callers here are not authenticated, so they share one identity for
	// deduplication; with mTLS, leave the default (the client certificate).
	serverOpts, err := failsoft.ServerOptions(
		failsoft.WithServerIdempotency(idempotency.WithIdentity(idempotency.Unauthenticated)))
	if err != nil {
		return err
	}
	srv := grpc.NewServer(serverOpts...)
	g := &greeter{seen: map[string]bool{}}
	greetv1.RegisterGreetServiceServer(srv, g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(lis) //nolint:errcheck // Serve returns when Stop is called
	defer srv.Stop()

	suite, err := failsoft.DialOptions()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(lis.Addr().String(), append(suite, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := greetv1.NewGreetServiceClient(conn)

	// Greet's proto says NO_SIDE_EFFECTS: its first UNAVAILABLE is retried.
	greet, err := client.Greet(ctx, &greetv1.GreetRequest{Name: "gopher"})
	if err != nil {
		return fmt.Errorf("Greet: %w", err)
	}
	fmt.Fprintln(out, greet.GetGreeting())

	// Sign requires an idempotency key: the client suite attaches one and
	// the server suite answers a repeat of it from the first result.
	sign, err := client.Sign(ctx, &greetv1.SignRequest{Name: "gopher"})
	if err != nil {
		return fmt.Errorf("Sign: %w", err)
	}
	g.mu.Lock()
	signs := g.signs
	g.mu.Unlock()
	fmt.Fprintf(out, "signature %d (signed %d time)\n", sign.GetSignature(), signs)
	return nil
}
