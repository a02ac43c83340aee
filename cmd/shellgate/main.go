// Command shellgate runs the shellgate web console for SSH, and manages its accounts
// from a shell.
//
//	shellgate [serve] [flags]        run the server (the default)
//	shellgate user add NAME [--admin] create an account; prints a generated password
//	shellgate user passwd NAME       set a new generated password (or --password-stdin)
//	shellgate user disable NAME      disable an account and end its sessions
//	shellgate user enable NAME
//	shellgate user list
//	shellgate backup --to FILE       online copy of the database (the master key is separate)
//	shellgate restore --from FILE    replace the database with a backup, after checking it
//	shellgate version                version, commit and Go version
//	shellgate agent --url URL ...    run on a host behind NAT; dials out to shellgate
//	shellgate proxy --url URL ...    local proxy of a tunnel for native clients
//
// main.go is the composition root and nothing else: config → store → handlers → server.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/shellgate/shellgate/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shellgate:", err)
		os.Exit(1)
	}
}

// run is the whole program with its inputs made explicit, so tests can call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		cmd, args = "help", nil // the sub-commands; `serve -h` lists the server's flags
	} else if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig("serve", args, getenv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, stderr)
	case "user":
		return userCommand(ctx, args, getenv, stdin, stdout, stderr)
	case "backup":
		return backupCommand(ctx, args, getenv, stdout, stderr)
	case "restore":
		return restoreCommand(ctx, args, getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.Get())
		return nil
	case "agent":
		return agentCommand(ctx, args, getenv, stdin, stderr)
	case "proxy":
		return proxyCommand(ctx, args, getenv, stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
}

const usage = `usage:
  shellgate [serve] [flags]           run the server (see: shellgate serve -h)
  shellgate user add NAME [--admin]   create an account; prints a generated password
  shellgate user passwd NAME          set a new password (generated, or --password-stdin)
  shellgate user disable NAME         disable an account and end its sessions
  shellgate user enable NAME          enable a disabled account
  shellgate user list                 list accounts
  shellgate backup --to FILE          online, consistent copy of the database (not the master key)
  shellgate restore --from FILE       replace the database with a backup (shellgate stopped)
  shellgate version                   version, commit and Go version
  shellgate agent --url URL [flags]   run on a host behind NAT (see: shellgate agent -h)
  shellgate proxy --url URL --token-file FILE -s PORT
                                      carry local TCP connections through a tunnel`
