// Package buildinfo says which shellgate is running: its version, the commit it was
// built from and the Go that built it, all read from the binary's own build
// information (runtime/debug), so no flag or linker setting can make them disagree.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info describes the running binary.
type Info struct {
	Version   string // module version, e.g. v1.2.0; "devel" for a build from a work tree
	Commit    string // VCS revision (short), "+dirty" appended when modified; "unknown" without VCS stamping
	Time      string // commit time as the VCS recorded it (RFC 3339), may be empty
	GoVersion string // e.g. go1.27.3
}

// String is the one-line form `shellgate version` prints.
func (i Info) String() string {
	s := "shellgate " + i.Version + " (commit " + i.Commit
	if i.Time != "" {
		s += ", " + i.Time
	}
	return s + ", " + i.GoVersion + ")"
}

var read = sync.OnceValue(func() Info {
	info := Info{Version: "devel", Commit: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
			if len(info.Commit) > 12 {
				info.Commit = info.Commit[:12]
			}
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Commit != "unknown" {
		info.Commit += "+dirty"
	}
	return info
})

// Get returns the running binary's build information.
func Get() Info { return read() }
