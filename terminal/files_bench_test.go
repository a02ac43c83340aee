package terminal

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shellgate/shellgate/internal/testsshd"
)

// benchSize is the file moved by BenchmarkDownload and BenchmarkUpload.
const benchSize = 256 << 20

// sftpBatch runs OpenSSH's sftp client with a batch of commands against
// s, strict about the host key, ignoring every ssh_config.
func sftpBatch(tb testing.TB, s *testsshd.SSHD, commands string) {
	tb.Helper()
	batch := filepath.Join(s.Dir, "batch")
	if err := os.WriteFile(batch, []byte(commands), 0o644); err != nil {
		tb.Fatal(err)
	}
	knownHosts := filepath.Join(s.Dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", s.Host, s.Port, marshalAuthorizedKey(s))
	if err := os.WriteFile(knownHosts, []byte(line), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("sftp", "-q", "-b", batch, "-F", "none",
		"-i", s.ClientKeyPath, "-P", strconv.Itoa(s.Port),
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		s.User+"@"+s.Host)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("sftp: %v\n%s", err, out)
	}
}

// benchEnv starts sshd and puts a benchSize file in the login's home and
// in a local folder.
func benchEnv(b *testing.B) (e *filesEnv, remote, local string) {
	b.Helper()
	if _, err := exec.LookPath("sftp"); err != nil {
		b.Skip("OpenSSH sftp client not installed")
	}
	e = newFilesEnv(b, "openssh")
	local = filepath.Join(b.TempDir(), "local.bin")
	f, err := os.Create(local)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, randReader(42, benchSize)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	remote = e.path("remote.bin")
	if err := exec.Command("cp", local, remote).Run(); err != nil {
		b.Fatal(err)
	}
	e.chown(b, remote)
	return e, remote, local
}

// compare runs ours and OpenSSH's as sub-benchmarks and logs the ratio of
// their throughputs (ours / OpenSSH's; 1.0 means as fast).
func compare(b *testing.B, ours, openssh func(b *testing.B)) {
	var perOp [2]time.Duration
	for i, fn := range []func(*testing.B){ours, openssh} {
		name := [...]string{"shellgate", "openssh-sftp"}[i]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchSize)
			fn(b)
			perOp[i] = b.Elapsed() / time.Duration(b.N)
		})
	}
	if perOp[0] > 0 && perOp[1] > 0 {
		mib := float64(benchSize) / (1 << 20)
		b.Logf("%.0f MiB: shellgate %.0f MiB/s, OpenSSH sftp %.0f MiB/s, ratio %.2f",
			mib, mib/perOp[0].Seconds(), mib/perOp[1].Seconds(), perOp[1].Seconds()/perOp[0].Seconds())
	}
}

func BenchmarkDownload(b *testing.B) {
	e, remote, _ := benchEnv(b)
	dst := filepath.Join(b.TempDir(), "dst.bin")
	compare(b, func(b *testing.B) {
		for b.Loop() {
			rf, err := e.files.Open(context.Background(), remote)
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(dst)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := rf.WriteTo(out); err != nil || n != benchSize {
				b.Fatalf("WriteTo = %d, %v", n, err)
			}
			out.Close()
			rf.Close()
		}
	}, func(b *testing.B) {
		for b.Loop() {
			sftpBatch(b, e.sshd, fmt.Sprintf("get %q %q\n", remote, dst))
		}
	})
}

func BenchmarkUpload(b *testing.B) {
	e, _, local := benchEnv(b)
	compare(b, func(b *testing.B) {
		for b.Loop() {
			in, err := os.Open(local)
			if err != nil {
				b.Fatal(err)
			}
			res, err := e.files.Upload(context.Background(), e.home, "up.bin",
				struct{ io.Reader }{in}, // an HTTP body: no size, no WriterTo
				UploadOptions{Overwrite: true})
			if err != nil || res.Size != benchSize {
				b.Fatalf("Upload = %+v, %v", res, err)
			}
			in.Close()
		}
	}, func(b *testing.B) {
		for b.Loop() {
			sftpBatch(b, e.sshd, fmt.Sprintf("put %q %q\n", local, e.path("up.bin")))
		}
	})
}

func marshalAuthorizedKey(s *testsshd.SSHD) []byte { return ssh.MarshalAuthorizedKey(s.HostKey) }
