package terminal

import (
	"context"
	"path"
	"regexp"
	"time"
)

// Orphaned uploads. Upload writes to ".NAME.shellgate-upload-XXXXXXXX" and
// removes that file whatever ends the upload — but a process that is killed,
// or a connection that dies before the removal reaches the server, leaves it
// behind. SweepOrphans removes such files once they are old enough that no
// upload can still be writing them; the Pool runs it when it opens an SFTP
// session (the login's home folder) and before an upload (its folder), each
// folder at most once per server per PoolConfig.SweepEvery.

// tempPattern matches the names tempName makes, and nothing a person is
// likely to name a file: a leading dot, the marker, eight hex digits.
var tempPattern = regexp.MustCompile(`^\..*\.shellgate-upload-[0-9a-f]{8}$`)

// IsTempName reports whether name is one of Upload's temporary names.
func IsTempName(name string) bool { return tempPattern.MatchString(name) }

// SweepOrphans removes, in the folder dir, the regular files named like
// Upload's temporary files whose modification time is older than now-age,
// and returns their paths. Other files are never touched. Errors on single
// files are skipped; the first listing error is returned.
func (f *Files) SweepOrphans(ctx context.Context, dir string, age time.Duration, now time.Time) ([]string, error) {
	infos, err := f.sftp.ReadDirContext(ctx, dir)
	if err != nil {
		return nil, fileErr("sweep", dir, err)
	}
	var removed []string
	for _, fi := range infos {
		if !fi.Mode().IsRegular() || !IsTempName(fi.Name()) || now.Sub(fi.ModTime()) < age {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		p := path.Join(dir, fi.Name())
		if err := f.sftp.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return removed, nil
}
