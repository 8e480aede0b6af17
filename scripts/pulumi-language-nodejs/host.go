package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

func (h *nodeHost) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// About reports the node executable and its version (`pulumi about`).
func (h *nodeHost) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node not found on PATH: %w", err)
	}
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("running node --version: %w", err)
	}
	return &pulumirpc.AboutResponse{
		Executable: node,
		Version:    strings.TrimPrefix(strings.TrimSpace(string(out)), "v"),
	}, nil
}

// InstallDependencies runs `npm install` in the project's package directory (the nearest
// package.json above the program directory, which for `main: dist/...` is above it), streaming
// npm's output back to the CLI.
func (h *nodeHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	dir := firstNonEmpty(req.GetInfo().GetProgramDirectory(), req.GetDirectory())
	if pkgDir := findUp(dir, "package.json"); pkgDir != "" {
		dir = pkgDir
	}

	w := &streamWriter{stream: stream}
	cmd := exec.CommandContext(stream.Context(), "npm", "install")
	cmd.Dir = dir
	cmd.Stdout = w.out()
	cmd.Stderr = w.err()
	_, _ = fmt.Fprintf(cmd.Stdout, "Installing dependencies in %s with `npm install`...\n", dir)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("`npm install` in %s failed: %w", dir, err)
	}
	_, _ = fmt.Fprintln(cmd.Stdout, "Finished installing dependencies")
	return nil
}

// streamWriter turns npm's stdout and stderr into InstallDependencies messages. exec copies the
// two pipes from separate goroutines and a gRPC stream allows one sender at a time, hence the lock.
type streamWriter struct {
	mu     sync.Mutex
	stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (s *streamWriter) out() writerFunc { return s.writer(false) }
func (s *streamWriter) err() writerFunc { return s.writer(true) }

func (s *streamWriter) writer(stderr bool) writerFunc {
	return func(p []byte) (int, error) {
		// The message keeps p past this call, and exec reuses its buffer.
		msg := &pulumirpc.InstallDependenciesResponse{}
		if stderr {
			msg.Stderr = append([]byte(nil), p...)
		} else {
			msg.Stdout = append([]byte(nil), p...)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.stream.Send(msg); err != nil {
			return 0, err
		}
		return len(p), nil
	}
}

// RuntimeOptionsPrompts: no extra questions for `pulumi new`.
func (h *nodeHost) RuntimeOptionsPrompts(
	ctx context.Context, req *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// Template: a Node.js template needs no post-processing.
func (h *nodeHost) Template(ctx context.Context, req *pulumirpc.TemplateRequest) (*pulumirpc.TemplateResponse, error) {
	return &pulumirpc.TemplateResponse{}, nil
}

// Cancel is how the CLI tells the host it is about to shut it down: it sends Cancel, then SIGKILLs
// the host's process group, which also takes down a node child we started (node deliberately stays
// in our group). Acknowledging it is all that is needed.
func (h *nodeHost) Cancel(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
