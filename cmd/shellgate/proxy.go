package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	"github.com/shellgate/shellgate/tunnel"
)

const proxyUsage = `usage: shellgate proxy --url URL --token-file FILE|- -s PORT [--listen ADDR]

Source mode of a tunnel: listens on ADDR:PORT (default 127.0.0.1) and carries
every TCP connection made to it through shellgate to the tunnel's server, so
native clients work unchanged: ssh -p PORT user@localhost, sftp -P PORT, scp -P.
The source token (shown once when the tunnel was opened) is read from a file
or standard input, never from the command line, and is spent on the first
connection. Prints the time left; exits when the tunnel closes or expires.`

// proxyCommand is "shellgate proxy".
func proxyCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, proxyUsage); fs.PrintDefaults() }
	u := fs.String("url", getenv("SHELLGATE_PROXY_URL"), "shellgate's public URL (SHELLGATE_PROXY_URL)")
	tokenFile := fs.String("token-file", getenv("SHELLGATE_PROXY_TOKEN_FILE"), "file holding the source token, - for standard input")
	port := fs.Int("s", 0, "local port to listen on (source mode)")
	listen := fs.String("listen", "127.0.0.1", "local address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (the token is read from --token-file, never from the command line)", fs.Arg(0))
	}
	if *u == "" || *tokenFile == "" || *port < 0 || *port > 65535 {
		return errors.New("proxy: --url, --token-file and -s PORT are required")
	}
	token, err := readToken(*tokenFile, stdin)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*listen, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p, err := tunnel.NewProxy(tunnel.ProxyConfig{
		URL: *u, Token: token, Listener: ln, Out: stdout,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	})
	if err != nil {
		ln.Close()
		return err
	}
	return p.Run(ctx)
}
