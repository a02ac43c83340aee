// Command seedkey registers a public SSH key for a user directly in a shellgate data
// dir, for the browser tests, until the SSH keys page (branch keys) can do it through
// the UI:
//
//	go run ./e2e/seedkey DATA_DIR USERNAME KEY_NAME 'ssh-ed25519 AAAA…'
//
// It prints the new key's id.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/store"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "seedkey:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("usage: seedkey DATA_DIR USERNAME KEY_NAME PUBLIC_KEY")
	}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(args[0], "shellgate.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := st.UserByName(ctx, args[1])
	if err != nil {
		return fmt.Errorf("user %s: %w", args[1], err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(args[3]))
	if err != nil {
		return err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	var id int64
	err = st.DB().QueryRowContext(ctx, `INSERT INTO ssh_keys (user_id, name, public_key, key_type, bits, fingerprint, created_at)
		VALUES (?, ?, ?, 'ED25519', 256, ?, 0) RETURNING id`, u.ID, args[2], line, ssh.FingerprintSHA256(pub)).Scan(&id)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}
