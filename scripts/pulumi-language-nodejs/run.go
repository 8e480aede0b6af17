package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

// exitCodeAlreadyReported is the exit code @pulumi/pulumi's cmd/run uses when it has already
// logged the program's error to the engine (nodeJSProcessExitedAfterLoggingUserActionableMessage
// in cmd/run/index.ts). The engine must then "bail": fail without printing anything more.
const exitCodeAlreadyReported = 32

// Run executes the program with `node <@pulumi/pulumi/cmd/run> <flags> <entry point>`.
func (h *nodeHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	programDir := firstNonEmpty(info.GetProgramDirectory(), req.GetPwd())
	entryPoint := firstNonEmpty(info.GetEntryPoint(), req.GetProgram(), ".")
	rootDir := firstNonEmpty(info.GetRootDirectory(), programDir)

	if req.GetAttachDebugger() {
		return nil, errors.New("this language host does not support --attach-debugger")
	}

	sdkDir := findPackage(programDir, "@pulumi/pulumi")
	if sdkDir == "" {
		// Reported as a program error (not an RPC error) so the CLI prints it like any other.
		return &pulumirpc.RunResponse{Error: fmt.Sprintf(
			"could not find @pulumi/pulumi in node_modules above %s; has `npm install` been run?", programDir)}, nil
	}

	args := nodeArgs(info.GetOptions())
	args = append(args, filepath.Join(sdkDir, "cmd", "run"),
		"--monitor="+req.GetMonitorAddress(),
		"--project="+req.GetProject(),
		"--root-directory="+rootDir,
		"--stack="+req.GetStack(),
		"--pwd="+programDir,
		"--parallel="+strconv.Itoa(int(req.GetParallel())),
	)
	// --sync (a directory of named pipes for synchronous invokes) is not offered: nothing in
	// @pulumi/pulumi 3.259 reads it any more.
	if h.engineAddress != "" {
		args = append(args, "--engine="+h.engineAddress)
	}
	if org := req.GetOrganization(); org != "" {
		args = append(args, "--organization="+org)
	}
	if req.GetDryRun() {
		// minimist treats dry-run as a boolean, so it must be a bare flag, never --dry-run=false.
		args = append(args, "--dry-run")
	}
	if h.tracing != "" {
		args = append(args, "--tracing="+h.tracing)
	}
	// cmd/run parses with stopEarly: the first positional is the program, the rest are its argv.
	args = append(args, entryPoint)
	args = append(args, req.GetArgs()...)

	env, err := programEnv(req)
	if err != nil {
		return nil, err
	}

	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = programDir
	cmd.Env = env
	// The engine already relays our own stdout/stderr as the program's output stream.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	logging.V(5).Infof("running node %s in %s", strings.Join(args, " "), programDir)

	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == exitCodeAlreadyReported:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
		}, nil
	case ctx.Err() != nil:
		// The engine cancelled the Run call (e.g. Ctrl-C); CommandContext killed node.
		return nil, ctx.Err()
	default:
		// Failed to start node at all, or it died from a signal.
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("running node: %v", err)}, nil
	}
}

// programEnv is our environment plus the settings @pulumi/pulumi reads from the environment rather
// than from flags: config (runtime/config.ts) and whether to load ts-node (cmd/run/run.ts).
func programEnv(req *pulumirpc.RunRequest) ([]string, error) {
	config := req.GetConfig()
	if config == nil {
		config = map[string]string{}
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}

	opts := req.GetInfo().GetOptions()
	set := map[string]string{
		"PULUMI_CONFIG":             string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS": string(secretKeysJSON),
		// Pulumi's default for the nodejs runtime is typescript: true.
		"PULUMI_NODEJS_TYPESCRIPT": strconv.FormatBool(boolOption(opts, "typescript", true)),
	}
	if tsconfig := stringOption(opts, "tsconfig"); tsconfig != "" {
		set["PULUMI_NODEJS_TSCONFIG_PATH"] = tsconfig
	}

	// Drop inherited copies first: a stale PULUMI_CONFIG from a parent process must not win.
	env := make([]string, 0, len(os.Environ())+len(set))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, overridden := set[k]; !overridden {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env, nil
}

// nodeArgs are extra arguments for node itself, from the `nodeargs` runtime option.
func nodeArgs(opts *structpb.Struct) []string {
	return strings.Fields(stringOption(opts, "nodeargs"))
}

func boolOption(opts *structpb.Struct, key string, def bool) bool {
	v, ok := opts.GetFields()[key]
	if !ok {
		return def
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_BoolValue:
		return k.BoolValue
	case *structpb.Value_StringValue:
		if b, err := strconv.ParseBool(k.StringValue); err == nil {
			return b
		}
	}
	return def
}

func stringOption(opts *structpb.Struct, key string) string {
	return opts.GetFields()[key].GetStringValue()
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
