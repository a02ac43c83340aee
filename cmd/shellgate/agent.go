package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/shellgate/shellgate/tunnel"
)

const agentUsage = `usage: shellgate agent --url URL [--token-file FILE|-] [--state-dir DIR] [--allow HOST:PORT,...]

Runs on a host shellgate cannot dial (behind NAT or a firewall): dials out to
shellgate over one WebSocket and carries the connections shellgate opens to the
allowed destinations (default 127.0.0.1:22). The first start enrolls with the
destination token shown once in shellgate (read from a file or standard input,
never from the command line); later starts reconnect with the agent's own key
in the state directory. HTTPS_PROXY is honoured.`

// agentCommand is "shellgate agent".
func agentCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, agentUsage); fs.PrintDefaults() }
	env := func(key, def string) string {
		if v := getenv("SHELLGATE_AGENT_" + key); v != "" {
			return v
		}
		return def
	}
	u := fs.String("url", env("URL", ""), "shellgate's public URL (SHELLGATE_AGENT_URL)")
	tokenFile := fs.String("token-file", env("TOKEN_FILE", ""), "file holding the destination token, - for standard input; needed only until enrolled (SHELLGATE_AGENT_TOKEN_FILE)")
	stateDir := fs.String("state-dir", env("STATE_DIR", "shellgate-agent"), "directory for the agent's key, created 0700 (SHELLGATE_AGENT_STATE_DIR)")
	allow := fs.String("allow", env("ALLOW", strings.Join(tunnel.DefaultAllow, ",")), "comma-separated host:port destinations shellgate may reach (SHELLGATE_AGENT_ALLOW)")
	logFormat := fs.String("log-format", env("LOG_FORMAT", "text"), "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (the token is read from --token-file, never from the command line)", fs.Arg(0))
	}
	if *u == "" {
		return errors.New("agent: --url is required")
	}
	var logger *slog.Logger
	if *logFormat == "json" {
		logger = slog.New(slog.NewJSONHandler(stderr, nil))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	key, err := tunnel.LoadOrCreateKey(*stateDir)
	if err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	token := ""
	if !tunnel.Enrolled(*stateDir) {
		if *tokenFile == "" {
			return errors.New("agent: not enrolled yet: give the destination token with --token-file FILE (or - for standard input)")
		}
		if token, err = readToken(*tokenFile, stdin); err != nil {
			return err
		}
	}
	var allowList []string
	for _, a := range strings.Split(*allow, ",") {
		if a = strings.TrimSpace(a); a != "" {
			allowList = append(allowList, a)
		}
	}
	dir := *stateDir
	a, err := tunnel.NewAgent(tunnel.AgentConfig{
		URL: *u, Key: key, Token: token, Allow: allowList, Logger: logger,
		OnEnrolled: func() error { return tunnel.MarkEnrolled(dir) },
	})
	if err != nil {
		return err
	}
	logger.Info("agent starting", "url", *u, "allow", allowList, "enrolling", token != "")
	return a.Run(ctx)
}

// readToken reads the token from a file or standard input ("-"): the first line,
// trimmed.
func readToken(path string, stdin io.Reader) (string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read token: %w", err)
	}
	t := strings.TrimSpace(line)
	if t == "" {
		return "", errors.New("read token: empty")
	}
	return t, nil
}
