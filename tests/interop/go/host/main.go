// A go-plugin 1.0.1 host that runs one execution the way a Dkron agent does.
//
//	host PLUGIN_PATH [key=value ...]
//
// It launches PLUGIN_PATH with Dkron's handshake, dispenses "executor", serves a
// StatusHelperService through the GRPCBroker, calls Execute for job "interop-job"
// with the key=value pairs as executor_config, and prints one JSON line:
//
//	{"output": ..., "error": ..., "updates": [{"output": ..., "error": bool}], "rpc_error": ...}
//
// Launch and dispense failures go to stderr with exit status 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	typesv1 "dkroninterop/types/v1"
)

const jobName = "interop-job"

// Dkron passes no deadline; this one only keeps a broken plugin from hanging the tests.
const executeTimeout = 20 * time.Second

var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "DKRON_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "b29a76488b6f3ca7955c5f769b50641f0fcd88748d8cedecda313d516320ca19",
}

type update struct {
	Output string `json:"output"`
	Error  bool   `json:"error"`
}

type result struct {
	Output   string   `json:"output"`
	Error    string   `json:"error"`
	Updates  []update `json:"updates"`
	RPCError string   `json:"rpc_error"`
}

// statusRecorder is the host's StatusHelperService: it keeps every chunk in order.
type statusRecorder struct {
	mu      sync.Mutex
	updates []update
}

func (r *statusRecorder) Update(ctx context.Context, req *typesv1.StatusUpdateRequest) (*typesv1.StatusUpdateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, update{Output: string(req.Output), Error: req.Error})
	return &typesv1.StatusUpdateResponse{R: 0}, nil
}

func (r *statusRecorder) snapshot() []update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]update{}, r.updates...)
}

// executorClient mirrors Dkron's plugin.ExecutorClient.Execute.
type executorClient struct {
	broker *plugin.GRPCBroker
	client typesv1.ExecutorServiceClient
}

func (m *executorClient) Execute(args *typesv1.ExecuteRequest, recorder *statusRecorder) (*typesv1.ExecuteResponse, error) {
	var (
		server *grpc.Server
		mu     sync.Mutex
		once   sync.Once
	)
	ready := make(chan struct{})
	signal := func() { once.Do(func() { close(ready) }) }
	serverFunc := func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		typesv1.RegisterStatusHelperServiceServer(s, recorder)
		mu.Lock()
		server = s
		mu.Unlock()
		// AcceptAndServe has already sent the ConnInfo when it calls us.
		signal()
		return s
	}
	brokerID := m.broker.NextId()
	go func() {
		// If AcceptAndServe fails before calling serverFunc, Execute must still run.
		defer signal()
		m.broker.AcceptAndServe(brokerID, serverFunc)
	}()
	<-ready

	args.StatusServer = brokerID
	ctx, cancel := context.WithTimeout(context.Background(), executeTimeout)
	defer cancel()
	resp, err := m.client.Execute(ctx, args)

	mu.Lock()
	if server != nil {
		server.Stop()
	}
	mu.Unlock()
	return resp, err
}

type executorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (executorPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("this binary is only a host")
}

func (executorPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return &executorClient{broker: broker, client: typesv1.NewExecutorServiceClient(conn)}, nil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "interop host: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: %s PLUGIN_PATH [key=value ...]", os.Args[0])
	}
	config := map[string]string{}
	for _, pair := range os.Args[2:] {
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 {
			fail("config argument %q is not key=value", pair)
		}
		config[kv[0]] = kv[1]
	}

	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          map[string]plugin.Plugin{"executor": executorPlugin{}},
		Cmd:              exec.Command(os.Args[1]),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          true,
		StartTimeout:     20 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:   "interop-host",
			Output: os.Stderr,
			Level:  hclog.Debug,
		}),
	})
	defer plugin.CleanupClients()

	rpcClient, err := client.Client()
	if err != nil {
		client.Kill()
		fail("cannot start plugin %s: %s", os.Args[1], err)
	}
	raw, err := rpcClient.Dispense("executor")
	if err != nil {
		client.Kill()
		fail("cannot dispense executor: %s", err)
	}
	executor := raw.(*executorClient)

	recorder := &statusRecorder{}
	resp, err := executor.Execute(&typesv1.ExecuteRequest{JobName: jobName, Config: config}, recorder)
	out := result{Updates: recorder.snapshot()}
	if err != nil {
		out.RPCError = err.Error()
	} else {
		out.Output = string(resp.Output)
		out.Error = resp.Error
	}
	if out.Updates == nil {
		out.Updates = []update{}
	}
	line, err := json.Marshal(out)
	if err != nil {
		client.Kill()
		fail("cannot encode result: %s", err)
	}
	fmt.Println(string(line))
	client.Kill()
}
