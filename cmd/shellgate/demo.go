package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/sshserver"
	"github.com/shellgate/shellgate/jobs"
	"github.com/shellgate/shellgate/store"
)

// demoName names both the demo stack and its one server.
const demoName = "demo"

// demo is the in-process SSH server of --demo mode and the stored server that points
// at it. Its client key lives only in memory: the SSH server accepts exactly that key,
// and shellgate offers it only for the demo server, so the demo opens no door that
// outlives the process or reaches anything else.
type demo struct {
	srv      *sshserver.Server
	signer   ssh.Signer
	serverID int64
}

// startDemo starts the in-process SSH server on a loopback port and creates (or, on
// later starts, re-points) the stack "demo" with its server "demo", host key pinned.
func startDemo(ctx context.Context, st *store.SQLite, logger *slog.Logger) (*demo, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("demo: client key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("demo: client key: %w", err)
	}
	want := signer.PublicKey().Marshal()
	srv, err := sshserver.Start(sshserver.Config{
		Addr: "127.0.0.1:0",
		PublicKey: func(_ string, key ssh.PublicKey) bool {
			return bytes.Equal(key.Marshal(), want)
		},
		Logger: logger.With("component", "demo-sshd"),
	})
	if err != nil {
		return nil, fmt.Errorf("demo: start SSH server: %w", err)
	}
	d := &demo{srv: srv, signer: signer}
	if d.serverID, err = d.upsert(ctx, st); err != nil {
		srv.Close()
		return nil, err
	}
	login := "?"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	logger.Warn("demo mode: an SSH server runs inside shellgate on "+srv.Addr()+
		" and gives every shellgate user who can open the stack \"demo\" (every admin, and its members) a shell as OS user "+login+
		"; do not use --demo on a shared machine",
		"addr", srv.Addr(), "os_user", login)
	return d, nil
}

// upsert makes sure the demo stack and server exist and point at this run's server.
func (d *demo) upsert(ctx context.Context, st *store.SQLite) (int64, error) {
	host, portStr, _ := net.SplitHostPort(d.srv.Addr())
	port, _ := strconv.Atoi(portStr)
	keys := []string{jobs.KeyLine(d.srv.HostKey())}
	login := "demo"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	now := time.Now()

	stacks, err := st.ListStacksForUser(ctx, 0, true)
	if err != nil {
		return 0, fmt.Errorf("demo: list stacks: %w", err)
	}
	var stack *store.Stack
	for i := range stacks {
		if stacks[i].Name == demoName {
			stack = &stacks[i]
		}
	}
	if stack == nil {
		stack = &store.Stack{Name: demoName, Description: "The in-process SSH server of --demo mode."}
		if err := st.CreateStack(ctx, stack); err != nil {
			return 0, fmt.Errorf("demo: create stack: %w", err)
		}
	}
	servers, err := st.ListServers(ctx, stack.ID)
	if err != nil {
		return 0, fmt.Errorf("demo: list servers: %w", err)
	}
	for _, sv := range servers {
		if sv.Name == demoName {
			if err := st.MoveServer(ctx, stack.ID, sv.ID, host, port, keys, now); err != nil {
				return 0, fmt.Errorf("demo: update server: %w", err)
			}
			return sv.ID, nil
		}
	}
	sv := &store.Server{StackID: stack.ID, Name: demoName, Host: host, Port: port, LoginUser: login,
		HostKeys: keys, PinnedAt: now}
	if err := st.CreateServer(ctx, sv); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return 0, fmt.Errorf("demo: a server named %q exists in stack %q: %w", demoName, demoName, err)
		}
		return 0, fmt.Errorf("demo: create server: %w", err)
	}
	return sv.ID, nil
}

// auth is handlers.Config.DemoAuth: the demo key, for the demo server only.
func (d *demo) auth(serverID int64) []ssh.Signer {
	if d == nil || serverID != d.serverID {
		return nil
	}
	return []ssh.Signer{d.signer}
}

func (d *demo) Close() error {
	if d == nil {
		return nil
	}
	return d.srv.Close()
}
