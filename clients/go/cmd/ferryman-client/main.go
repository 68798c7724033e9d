// Command ferryman-client calls a Ferryman gateway over gRPC: Route (the routing decision only)
// and ChatCompletion (a routed completion), and prints both decisions.
//
// Build offline (GOPATH mode, Debian's grpc-go and protobuf-go) with `make clients`, then:
//
//	clients/go/bin/ferryman-client -addr 127.0.0.1:50061 -prompt "Prove that sqrt(2) is irrational."
//
// The client key, if the gateway requires one, comes from -api-key or FERRYMAN_API_KEY.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	gatewayv1 "ferryman/gen/go/ferryman/gateway/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50061", "gateway gRPC address (host:port)")
	model := flag.String("model", "ferryman-balanced", "routed model name, named policy or plain model")
	prompt := flag.String("prompt", "Explain the difference between a mutex and a semaphore.", "user prompt")
	apiKey := flag.String("api-key", "", "client key sent as 'authorization: Bearer ...' (default: $FERRYMAN_API_KEY)")
	chat := flag.Bool("chat", true, "also call ChatCompletion (needs a reachable provider)")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each call")
	flag.Parse()
	if *apiKey == "" {
		*apiKey = os.Getenv("FERRYMAN_API_KEY") // not the flag default, so -h never prints the key
	}
	if err := run(*addr, *model, *prompt, *apiKey, *chat, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "ferryman-client:", err)
		os.Exit(1)
	}
}

func run(addr, model, prompt, apiKey string, chat bool, timeout time.Duration) error {
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	client := gatewayv1.NewGatewayServiceClient(conn)
	messages := []*gatewayv1.ChatMessage{{Role: "user", Content: prompt}}

	ctx, cancel := callContext(apiKey, timeout)
	defer cancel()
	route, err := client.Route(ctx, &gatewayv1.RouteRequest{Model: model, Messages: messages})
	if err != nil {
		return fmt.Errorf("Route: %w", err)
	}
	fmt.Println("route " + formatDecision(route.GetDecision()))

	if !chat {
		return nil
	}
	ctx2, cancel2 := callContext(apiKey, timeout)
	defer cancel2()
	resp, err := client.ChatCompletion(ctx2, &gatewayv1.ChatCompletionRequest{Model: model, Messages: messages})
	if err != nil {
		return fmt.Errorf("ChatCompletion: %w", err)
	}
	acc := resp.GetAccounting()
	fmt.Printf("chat %s served_model=%s degraded=%t cost_usd=%.6f reply=%s\n",
		formatDecision(resp.GetDecision()), acc.GetServedModel(), acc.GetDegraded(), acc.GetCostUsd(),
		strconv.Quote(resp.GetMessage().GetContent()))
	return nil
}

// callContext bounds one call and attaches the client key, if any.
func callContext(apiKey string, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if apiKey != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apiKey)
	}
	return ctx, cancel
}

// formatDecision prints a decision as key=value pairs, the same line format as the Node and
// Python clients; scores lists every score used as tier:score/threshold, cheapest tier first.
func formatDecision(d *gatewayv1.RoutingDecision) string {
	scores := make([]string, 0, len(d.GetTierScores()))
	for _, t := range d.GetTierScores() {
		scores = append(scores, fmt.Sprintf("%s:%.6f/%.6f", t.GetTier(), t.GetScore(), t.GetThreshold()))
	}
	return fmt.Sprintf("tier=%s model=%s router=%s score=%.6f threshold=%.6f source=%s policy=%s tier_name=%s scores=%s",
		d.GetTier(), d.GetModel(), d.GetRouter(), d.GetScore(), d.GetThreshold(), d.GetSource(), d.GetPolicy(),
		d.GetTierName(), strings.Join(scores, ","))
}
