package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/shellgate/shellgate/handlers"
	"github.com/shellgate/shellgate/internal/password"
	"github.com/shellgate/shellgate/store"
)

// userCommand manages accounts from a shell: for the first admin on a headless box, or
// a locked-out one.
func userCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("user: want add, passwd, disable, enable or list\n\n" + usage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", envOr(getenv, "SHELLGATE_DATA_DIR", "shellgate-data"), "data directory")
	dbURL := fs.String("database-url", getenv("SHELLGATE_DATABASE_URL"), "database URL")
	admin := fs.Bool("admin", false, "with add: make the account an administrator")
	fromStdin := fs.Bool("password-stdin", false, "read the password from standard input instead of generating one")
	// Accept the name before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	cfg := &config{DataDir: *dataDir, DatabaseURL: *dbURL}
	_, st, err := openState(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	if sub == "list" {
		users, err := st.ListUsers(ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			state := "active"
			if u.Disabled {
				state = "disabled"
			}
			fmt.Fprintf(stdout, "%-24s %-7s %s\n", u.Username, u.Role, state)
		}
		return nil
	}
	if !handlers.ValidUsername.MatchString(name) {
		return fmt.Errorf("user %s: want a username (1-64 letters, digits, . - _)", sub)
	}
	newPassword := func() (string, bool, error) {
		if !*fromStdin {
			return password.Generate(), true, nil
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, err
		}
		pw := strings.TrimRight(line, "\r\n")
		if err := password.CheckStrength(pw); err != nil {
			return "", false, fmt.Errorf("password too weak: %w", err)
		}
		return pw, false, nil
	}
	audit := func(kind string) {
		_ = st.AppendEvent(ctx, &store.Event{Kind: kind, ActorName: "shellgate user", Target: strings.ToLower(name), OK: true,
			Detail: map[string]string{"via": "command line"}})
	}

	switch sub {
	case "add":
		pw, generated, err := newPassword()
		if err != nil {
			return err
		}
		hash, err := password.Hash(pw)
		if err != nil {
			return err
		}
		role := store.RoleMember
		if *admin {
			role = store.RoleAdmin
		}
		if err := st.CreateUser(ctx, &store.User{Username: name, PasswordHash: hash, Role: role}); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("user %s already exists", name)
			}
			return err
		}
		audit("user.create")
		fmt.Fprintf(stdout, "Created %s (%s).\n", strings.ToLower(name), role)
		if generated {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		}
		return nil
	case "passwd", "disable", "enable":
		u, err := st.UserByName(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no user %s", name)
		}
		if err != nil {
			return err
		}
		switch sub {
		case "passwd":
			pw, generated, err := newPassword()
			if err != nil {
				return err
			}
			hash, err := password.Hash(pw)
			if err != nil {
				return err
			}
			if err := st.SetPassword(ctx, u.ID, hash); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "New password set for %s; their sessions are ended.\n", u.Username)
			if generated {
				fmt.Fprintf(stdout, "password: %s\n", pw)
			}
			audit("user.password_reset")
		case "disable":
			if err := st.SetDisabled(ctx, u.ID, true); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Disabled %s; their sessions are ended.\n", u.Username)
			audit("user.disable")
		case "enable":
			if err := st.SetDisabled(ctx, u.ID, false); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Enabled %s.\n", u.Username)
			audit("user.enable")
			return nil
		}
		return nil
	default:
		return fmt.Errorf("user: unknown sub-command %q\n\n%s", sub, usage)
	}
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
