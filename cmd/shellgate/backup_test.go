package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/shellgate/shellgate/terminal"
)

const backupAdminPassword = "correct horse battery staple 42"

// runCmd runs one sub-command the way a shell would, and returns its output.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	return out.String() + errOut.String(), err
}

// dumpDB reads every table of a SQLite file, rows in rowid order, as text.
func dumpDB(t *testing.T, path string) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	dump := make(map[string][]string)
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM ` + table + ` ORDER BY rowid`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			dump[table] = append(dump[table], fmt.Sprint(vals...))
		}
		rows.Close()
	}
	return dump
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// demoIDs signs in and finds the demo stack and server.
func demoIDs(t *testing.T, w *webClient) (string, string) {
	t.Helper()
	list := w.get("/stacks")
	ids := regexp.MustCompile(`href="/stacks/(\d+)"[^>]*>\s*demo\s*<`).FindStringSubmatch(list)
	if ids == nil {
		t.Fatal("no demo stack")
	}
	m := regexp.MustCompile(`/stacks/(\d+)/servers/(\d+)/terminal`).FindStringSubmatch(w.get("/stacks/" + ids[1]))
	if m == nil {
		t.Fatal("no terminal link")
	}
	return m[1], m[2]
}

// TestBackupWhileRunningRestores: `shellgate backup` runs against a live shellgate in the
// middle of an upload with a terminal open, without disturbing either; the copy holds
// the data as of that moment (accounts, stacks, keys and the running session's
// audit record); restore refuses while shellgate runs, then, stopped, puts exactly the
// backup in place, keeps the previous database beside it, and shellgate starts and
// signs in on the restored data.
func TestBackupWhileRunningRestores(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "shellgate.db")
	backup := filepath.Join(t.TempDir(), "backup.db")
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": backupAdminPassword}
	base, _, stop := startServe(t, []string{"--demo", "--listen", "127.0.0.1:0", "--data-dir", dir}, env)
	w := signIn(t, base, "admin", backupAdminPassword)
	stackID, serverID := demoIDs(t, w)

	// A terminal, connected and working.
	ws := w.openTerminalSocket(stackID, serverID)
	readSocket(t, ws, func(out string, st *terminal.StatusMessage) bool {
		if st != nil && st.State == terminal.StateConnected {
			ws.WriteMessage(websocket.BinaryMessage, []byte("echo before-$((1+1))\n"))
		}
		return strings.Contains(out, "before-2")
	})

	// An upload whose body is still arriving.
	target := t.TempDir()
	data := make([]byte, 4<<20)
	rand.Read(data)
	pr, pw := io.Pipe()
	q := url.Values{"dir": {target}, "name": {"up.bin"}, "size": {fmt.Sprint(len(data))}}
	req, _ := http.NewRequest(http.MethodPut, base+"/stacks/"+stackID+"/servers/"+serverID+"/files/upload?"+q.Encode(), pr)
	req.ContentLength = int64(len(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", base)
	req.Header.Set("X-CSRF-Token", w.csrf)
	uploaded := make(chan int, 1)
	go func() {
		resp, err := w.c.Do(req)
		if err != nil {
			uploaded <- -1
			return
		}
		resp.Body.Close()
		uploaded <- resp.StatusCode
	}()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}

	out, err := runCmd(t, "backup", "--to", backup, "--data-dir", dir)
	if err != nil {
		t.Fatalf("backup while running: %v\n%s", err, out)
	}
	keyPath, _ := filepath.Abs(filepath.Join(dir, "master.key"))
	if !strings.Contains(out, "master key is NOT in this backup") || !strings.Contains(out, keyPath) {
		t.Fatalf("backup does not say where the master key is:\n%s", out)
	}
	if st, _ := os.Stat(backup); st.Mode().Perm() != 0o600 {
		t.Fatalf("backup mode %04o, want 0600", st.Mode().Perm())
	}
	if _, err := runCmd(t, "backup", "--to", backup, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}

	// Both carry on: the upload completes intact, the terminal answers.
	pw.Write(data[len(data)/2:])
	pw.Close()
	if code := <-uploaded; code != http.StatusOK {
		t.Fatalf("upload during backup: %d", code)
	}
	if got, err := os.ReadFile(filepath.Join(target, "up.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uploaded file differs (%d bytes, %v)", len(got), err)
	}
	ws.WriteMessage(websocket.BinaryMessage, []byte("echo after-$((2+2))\n"))
	readSocket(t, ws, func(out string, _ *terminal.StatusMessage) bool { return strings.Contains(out, "after-4") })

	// The backup is the data as of its moment.
	snap, live := dumpDB(t, backup), dumpDB(t, dbPath)
	for _, table := range []string{"users", "stacks", "servers", "ssh_keys", "gateway_identity", "schema_migrations"} {
		if fmt.Sprint(snap[table]) != fmt.Sprint(live[table]) {
			t.Errorf("table %s differs between backup and live database:\n%v\n%v", table, snap[table], live[table])
		}
	}
	if len(snap["users"]) != 1 || len(snap["gateway_identity"]) != 1 || len(snap["servers"]) != 1 {
		t.Fatalf("backup misses data: %d users, %d gateway keys, %d servers", len(snap["users"]), len(snap["gateway_identity"]), len(snap["servers"]))
	}
	if !strings.Contains(fmt.Sprint(snap["audit_events"]), "terminal.start") {
		t.Fatal("the running session's audit record is not in the backup")
	}
	if strings.Contains(fmt.Sprint(snap["audit_events"]), "file.upload") {
		t.Fatal("the backup holds an upload that finished after it")
	}
	for i, row := range snap["audit_events"] { // what the backup has, the live log has too
		if live["audit_events"][i] != row {
			t.Fatalf("audit event %d differs: %s vs %s", i, row, live["audit_events"][i])
		}
	}

	// Restore is refused while shellgate runs, and changes nothing.
	liveHash := fileHash(t, dbPath)
	if out, err := runCmd(t, "restore", "--from", backup, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "shellgate is running") {
		t.Fatalf("restore while running: %v\n%s", err, out)
	}
	if fileHash(t, dbPath) != liveHash {
		t.Fatal("a refused restore changed the database")
	}

	ws.Close()
	stop()
	out, err = runCmd(t, "restore", "--from", backup, "--data-dir", dir)
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if fmt.Sprint(dumpDB(t, dbPath)) != fmt.Sprint(snap) {
		t.Fatal("the restored database is not the backup")
	}
	aside, _ := filepath.Glob(dbPath + ".before-restore-*")
	if len(aside) != 1 || !strings.Contains(out, aside[0]) {
		t.Fatalf("previous database not kept (or not named): %v\n%s", aside, out)
	}
	if !strings.Contains(fmt.Sprint(dumpDB(t, aside[0])["audit_events"]), "file.upload") {
		t.Fatal("the database kept aside is not the previous one")
	}
	if st, _ := os.Stat(dbPath); st.Mode().Perm() != 0o600 {
		t.Fatalf("restored database mode %04o", st.Mode().Perm())
	}

	// shellgate runs on the restored data with the same master key.
	base, _, stop = startServe(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dir}, nil)
	w = signIn(t, base, "admin", backupAdminPassword)
	if !strings.Contains(w.get("/stacks"), "demo") {
		t.Fatal("restored stack missing")
	}
	stop()
}

// TestRestoreRefusesWrongMasterKey: a backup restored next to another installation's
// master key would leave every sealed SSH key unusable (and tempt someone to "fix" it
// by hand). Restore must find out before it replaces anything: the database, its
// neighbours and the data dir stay exactly as they were.
func TestRestoreRefusesWrongMasterKey(t *testing.T) {
	env := map[string]string{"SHELLGATE_ADMIN_PASSWORD": backupAdminPassword}
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} { // each start creates its own master key and gateway key
		_, _, stop := startServe(t, []string{"--listen", "127.0.0.1:0", "--data-dir", dir}, env)
		stop()
	}
	backup := filepath.Join(t.TempDir(), "a.db")
	if out, err := runCmd(t, "backup", "--to", backup, "--data-dir", a); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	before, _ := os.ReadDir(b)
	dbHash := fileHash(t, filepath.Join(b, "shellgate.db"))
	out, err := runCmd(t, "restore", "--from", backup, "--data-dir", b)
	if err == nil || !strings.Contains(err.Error(), "does not open") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("restore with another master key: %v\n%s", err, out)
	}
	after, _ := os.ReadDir(b)
	if fmt.Sprint(names(before)) != fmt.Sprint(names(after)) {
		t.Fatalf("data dir changed: %v → %v", names(before), names(after))
	}
	if fileHash(t, filepath.Join(b, "shellgate.db")) != dbHash {
		t.Fatal("database replaced despite the refusal")
	}

	// The same backup with its own master key is accepted.
	if out, err := runCmd(t, "restore", "--from", backup, "--data-dir", a); err != nil {
		t.Fatalf("restore with the right key: %v\n%s", err, out)
	}
	// Without any master key, nothing is created and nothing replaced.
	c := t.TempDir()
	if _, err := runCmd(t, "restore", "--from", backup, "--data-dir", c); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("restore without a master key: %v", err)
	}
	if entries, _ := os.ReadDir(c); len(entries) != 0 {
		t.Fatalf("restore without a key left %v", names(entries))
	}
}

func names(entries []os.DirEntry) []string {
	var n []string
	for _, e := range entries {
		n = append(n, e.Name())
	}
	return n
}

// TestVersionAndHelp: `shellgate version` names the Go that built it, and the help
// lists every sub-command.
func TestVersionAndHelp(t *testing.T) {
	out, err := runCmd(t, "version")
	if err != nil || !strings.HasPrefix(out, "shellgate ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: %v %q", err, out)
	}
	out, err = runCmd(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"serve", "user add", "backup --to", "restore --from", "version"} {
		if !strings.Contains(out, "shellgate "+sub) && !strings.Contains(out, "shellgate ["+sub) {
			t.Errorf("help lacks %q:\n%s", sub, out)
		}
	}
}
