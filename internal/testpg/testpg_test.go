package testpg

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Run(m.Run)) }

// TestClusterAcceptsOnlyThePassword: the throwaway server listens on loopback with
// password authentication, so another local user cannot use it as a superuser.
func TestClusterAcceptsOnlyThePassword(t *testing.T) {
	c := Need(t)
	ctx := context.Background()
	url := c.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d %v", one, err)
	}
	conn.Close(ctx)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = "wrong"
	if conn, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a wrong password")
	}
}
