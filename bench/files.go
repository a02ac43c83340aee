package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// SFTPBatch runs the OpenSSH sftp client in batch mode (-b -, commands on
// stdin; any failing command fails the run) against srv and returns how
// long it took, connection set-up included.
func SFTPBatch(ctx context.Context, srv *SSHServer, commands ...string) (time.Duration, error) {
	args, err := srv.OpenSSHArgs("-P")
	if err != nil {
		return 0, err
	}
	args = append(args, "-b", "-", srv.User+"@"+srv.Host)
	cmd := exec.CommandContext(ctx, "sftp", args...)
	cmd.Stdin = strings.NewReader(strings.Join(commands, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("sftp %q: %w\n%s", commands, err, out.String())
	}
	return d, nil
}

// ErrNotBuilt means shellgate answered 404 on a file route: the file HTTP
// API is not in this build yet.
var ErrNotBuilt = errors.New("not built yet")

// Transfer is what one HTTP transfer moved, for checking against the
// source: its length and SHA-256.
type Transfer struct {
	Bytes  int64
	SHA256 [sha256.Size]byte
	Took   time.Duration
}

func (s *Shellgate) filesURL(op string, q url.Values) string {
	return fmt.Sprintf("%s/stacks/%s/servers/%s/files/%s?%s", s.URL, s.StackID, s.ServerID, op, q.Encode())
}

// Download fetches remotePath through GET …/files/download, hashing the
// body as it arrives (nothing is written to disk).
func (s *Shellgate) Download(ctx context.Context, remotePath string) (Transfer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.filesURL("download", url.Values{"path": {remotePath}}), nil)
	if err != nil {
		return Transfer{}, err
	}
	start := time.Now()
	resp, err := s.Admin().Do(req)
	if err != nil {
		return Transfer{}, err
	}
	defer resp.Body.Close()
	if err := fileStatus(resp, "GET …/files/download"); err != nil {
		return Transfer{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	t := Transfer{Bytes: n, Took: time.Since(start)}
	copy(t.SHA256[:], h.Sum(nil))
	return t, err
}

// Upload sends the local file src through PUT …/files/upload into the
// remote directory dir as name, overwriting.
func (s *Shellgate) Upload(ctx context.Context, src, dir, name string) (time.Duration, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	q := url.Values{"dir": {dir}, "name": {name}, "size": {fmt.Sprint(fi.Size())}, "overwrite": {"1"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.filesURL("upload", q), f)
	if err != nil {
		return 0, err
	}
	req.ContentLength = fi.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	resp, err := s.Admin().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	d := time.Since(start)
	return d, fileStatus(resp, "PUT …/files/upload")
}

func fileStatus(resp *http.Response, what string) error {
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s answers 404 (the file HTTP API is not merged)", ErrNotBuilt, what)
	case resp.StatusCode/100 != 2:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%s: %s: %s", what, resp.Status, firstLine(msg))
	}
	return nil
}

// FileSum is the length and SHA-256 of a local file.
func FileSum(path string) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return 0, sum, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	copy(sum[:], h.Sum(nil))
	return n, sum, err
}
