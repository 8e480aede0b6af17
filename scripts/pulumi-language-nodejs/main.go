// Command pulumi-language-nodejs is this project's stand-in for Pulumi's Node.js language host.
// The official one (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3) is not
// served by the Go module proxy available here, so scripts/build-pulumi.sh builds this small
// replacement instead. It implements pulumirpc.LanguageRuntime far enough for the CLI
// (preview/up/refresh/destroy/config/stack output/install) and the Automation API to run a
// plain-JavaScript Node.js program through @pulumi/pulumi's own `cmd/run` entry point.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// version is reported by GetPluginInfo; it tracks the @pulumi/pulumi release this host targets.
const version = "3.259.0"

// engineCheckPeriod is how often the engine is asked whether it still answers (Pulumi's plugins:
// every 5 minutes); a health RPC on the loopback costs next to nothing.
const engineCheckPeriod = 5 * time.Second

func main() {
	// The CLI launches language plugins as
	//   pulumi-language-nodejs [--logtostderr] [-v=N] [--tracing URL] ENGINE_ADDRESS
	// (see buildPluginArguments / buildArgsForNewPlugin in the SDK's resource/plugin package).
	// A private FlagSet keeps us clear of the glog flags the SDK's logging package registers on
	// flag.CommandLine. -root is accepted (and ignored) for older CLIs that still pass it.
	fs := flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	logToStderr := fs.Bool("logtostderr", false, "log to stderr")
	logFlow := fs.Bool("logflow", false, "flow logging settings to child processes")
	verbose := fs.Int("v", 0, "log verbosity")
	tracing := fs.String("tracing", "", "tracing endpoint, forwarded to the Node.js program")
	_ = fs.String("root", "", "project root directory (unused: ProgramInfo carries it)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	logging.InitLogging(*logToStderr, *verbose, *logFlow)

	engineAddress := ""
	if fs.NArg() > 0 {
		engineAddress = fs.Arg(0)
	}

	// A CLI killed outright (SIGKILL, an OOM kill) never closes its plugins. As Pulumi's own plugins
	// do, this host checks that the engine still answers and stops serving when it does not, so it
	// ends instead of living on as an orphan; a Run in flight ends first, its node killed with it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, engineCheckPeriod, cancel); err != nil {
			fmt.Fprintf(os.Stderr, "fatal: could not start the engine health check: %v\n", err)
			os.Exit(1)
		}
	}
	stop := make(chan bool)
	go func() {
		<-ctx.Done()
		close(stop)
	}()

	host := &nodeHost{engineAddress: engineAddress, tracing: *tracing}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
		Options: rpcutil.TracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fatal: could not start the language host RPC server: %v\n", err)
		os.Exit(1)
	}

	// The engine reads exactly one line from our stdout: the port to dial. Everything written to
	// stdout/stderr afterwards (including the Node.js program's output) is shown as program output.
	fmt.Printf("%d\n", handle.Port)

	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "fatal: %v\n", err)
		os.Exit(1)
	}
}

// nodeHost is the LanguageRuntime server. Methods the flows above never call (code generation,
// Pack, Link, RunPlugin) fall through to the embedded Unimplemented server.
type nodeHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	engineAddress string
	tracing       string
}

func (h *nodeHost) Handshake(
	ctx context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	// Only sent when the host is attached via PULUMI_DEBUG_LANGUAGES rather than launched, in which
	// case there was no positional engine address.
	h.engineAddress = req.GetEngineAddress()
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}
