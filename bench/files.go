package bench

import (
	"bytes"
	"context"
	"fmt"
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
