// Command periscope is a zero-instrumentation APM agent: it watches every
// process on the node from the kernel and turns what it sees into
// OpenTelemetry traces and metrics.
//
//	periscope run [flags]   run the agent
//	periscope check         show what this kernel offers and which attach path each collector uses
//	periscope version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/periscope-apm/periscope/agent"
	"github.com/periscope-apm/periscope/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runAgent(args[1:], stdout, stderr)
	case "check":
		return check(stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "periscope", agent.Version())
		return exitOK
	case "-h", "--help", "help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "periscope: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  periscope run [flags]   run the agent (periscope run -h lists the flags)
  periscope check         show what this kernel offers and which attach path each collector uses
  periscope version       print the version
`)
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(args, stderr)
	if errors.Is(err, config.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "periscope: %v\n", err)
		return exitUsage
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, log, stdout); err != nil {
		var ue *agent.UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "periscope: %v\n", err)
			return exitUsage
		}
		log.Error("agent failed", "err", err)
		return exitFailure
	}
	return exitOK
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func check(stdout, stderr io.Writer) int {
	report := agent.Check()
	fmt.Fprint(stdout, report.String())
	if missing := report.Features.Missing(); len(missing) > 0 {
		fmt.Fprintf(stderr, "periscope: the agent cannot run here: missing %s\n", strings.Join(missing, ", "))
		return exitFailure
	}
	return exitOK
}
