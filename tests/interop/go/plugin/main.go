// A Dkron-style executor plugin for the interop tests, built against the Debian
// go-plugin 1.0.1. It behaves like a plugin built with Dkron's plugin package:
// Execute dials the host's StatusHelper through the GRPCBroker before doing
// anything else, streams a few chunks, then answers.
//
// Behaviour is driven by the job's executor_config:
//
//	fail=<text>  return a non-empty ExecuteResponse.error
//	crash=<any>  exit with status 3 after the first update
//
// Linked with -X main.generation=legacy it serves only the pre-4.0.9 names
// (types.Executor, and dials types.StatusHelper), like a plugin built for
// Dkron <= 4.0.8.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	typeslegacy "dkroninterop/types/legacy"
	typesv1 "dkroninterop/types/v1"
)

// generation is "v1" (Dkron >= 4.0.9) or "legacy" (Dkron <= 4.0.8); set by the linker.
var generation = "v1"

// plugin.Serve swaps os.Stderr for a pipe nobody reads in go-plugin 1.0.1, so keep
// the real one for messages the host must see.
var realStderr = os.Stderr

var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "DKRON_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "b29a76488b6f3ca7955c5f769b50641f0fcd88748d8cedecda313d516320ca19",
}

type statusUpdater interface {
	Update(ctx context.Context, in *typesv1.StatusUpdateRequest, opts ...grpc.CallOption) (*typesv1.StatusUpdateResponse, error)
}

type executorServer struct {
	broker *plugin.GRPCBroker
}

func (s *executorServer) Execute(ctx context.Context, req *typesv1.ExecuteRequest) (*typesv1.ExecuteResponse, error) {
	// Dkron's ExecutorServer dials unconditionally, before running the job.
	conn, err := s.broker.Dial(req.StatusServer)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	var status statusUpdater
	if generation == "legacy" {
		status = typeslegacy.NewStatusHelperClient(conn)
	} else {
		status = typesv1.NewStatusHelperServiceClient(conn)
	}
	update := func(chunk string, isErr bool) error {
		_, err := status.Update(ctx, &typesv1.StatusUpdateRequest{Output: []byte(chunk), Error: isErr})
		return err
	}

	if err := update("starting "+req.JobName+"\n", false); err != nil {
		return nil, fmt.Errorf("status update 1: %w", err)
	}
	if _, ok := req.Config["crash"]; ok {
		fmt.Fprintln(realStderr, "interop plugin: crashing on purpose")
		os.Exit(3)
	}
	if err := update("warning from "+req.JobName+"\n", true); err != nil {
		return nil, fmt.Errorf("status update 2: %w", err)
	}
	if err := update("finishing "+req.JobName+"\n", false); err != nil {
		return nil, fmt.Errorf("status update 3: %w", err)
	}

	keys := make([]string, 0, len(req.Config))
	for k := range req.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, 0, len(keys))
	for _, k := range keys {
		pairs = append(pairs, k+"="+req.Config[k])
	}
	resp := &typesv1.ExecuteResponse{
		Output: []byte(fmt.Sprintf("job=%s generation=%s config=%s\n",
			req.JobName, generation, strings.Join(pairs, ","))),
	}
	if reason, ok := req.Config["fail"]; ok {
		resp.Error = "failed on request: " + reason
	}
	return resp, nil
}

type executorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (executorPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	impl := &executorServer{broker: broker}
	if generation == "legacy" {
		typeslegacy.RegisterExecutorServer(s, impl)
	} else {
		typesv1.RegisterExecutorServiceServer(s, impl)
	}
	return nil
}

func (executorPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, fmt.Errorf("this binary is only a plugin")
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         map[string]plugin.Plugin{"executor": executorPlugin{}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
