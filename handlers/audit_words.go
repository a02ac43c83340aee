package handlers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// describeEvent says what an audit event's detail means in words for the audit page's
// What column ("Terminal as deploy with key laptop, 3m12s, exit status 0, 1.2 KiB
// typed, 4.0 MiB shown"), never raw key=value text. The CSV and JSON exports keep the
// raw detail for machines.
func describeEvent(kind string, d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	bytes := func(k string) string {
		n, err := strconv.ParseInt(d[k], 10, 64)
		if err != nil {
			return d[k]
		}
		return formatSize(n)
	}
	as := func() string {
		s := ""
		if d["login"] != "" {
			s = "as " + d["login"]
		}
		switch {
		case d["key"] != "":
			s = strings.TrimSpace(s + " with key " + d["key"])
		case d["keys"] != "":
			s = strings.TrimSpace(s + " offering " + plural(strings.Count(d["keys"], ",")+1, "key"))
		}
		return s
	}
	used := map[string]bool{}
	use := func(keys ...string) {
		for _, k := range keys {
			used[k] = true
		}
	}
	switch kind {
	case "terminal.start":
		add(strings.TrimSpace("Terminal opened " + as()))
		use("login", "key", "keys", "session", "local")
	case "terminal.end":
		add(strings.TrimSpace("Terminal " + as()))
		if v := d["duration"]; v != "" {
			if dur, err := time.ParseDuration(v); err == nil {
				v = dur.String()
			}
			add("lasted " + v)
		}
		if v, ok := d["exit_status"]; ok {
			add("exit status " + v)
		}
		if v, ok := d["ended"]; ok {
			add(v)
		}
		if d["bytes_in"] != "" {
			add(bytes("bytes_in") + " typed")
		}
		if d["bytes_out"] != "" {
			add(bytes("bytes_out") + " shown")
		}
		if d["recording"] == "yes" {
			add("recorded")
		}
		use("login", "key", "keys", "session", "local", "duration", "exit_status", "ended", "bytes_in", "bytes_out", "recording")
	case "file.download", "file.upload":
		verb := map[string]string{"file.download": "Downloaded ", "file.upload": "Uploaded "}[kind]
		s := verb + d["path"]
		if d["size"] != "" {
			s += " (" + bytes("size") + ")"
		}
		add(s)
		if d["range"] != "" {
			add("range " + d["range"])
		}
		if d["replaced"] == "true" {
			add("replaced the existing file")
		}
		use("path", "size", "range", "replaced")
	case "file.archive":
		add(fmt.Sprintf("Downloaded folder %s as a zip (%s, %s)", d["path"], plural(atoi(d["files"]), "file"), bytes("bytes")))
		if d["skipped"] != "" {
			add(d["skipped"] + " skipped")
		}
		use("path", "files", "bytes", "skipped")
	case "file.mkdir":
		add("Created folder " + d["path"])
		use("path")
	case "file.rename":
		add("Renamed " + d["path"] + " to " + d["to"])
		use("path", "to")
	case "file.delete":
		if d["folder"] == "true" {
			add("Deleted folder " + d["path"] + " and everything in it")
		} else {
			add("Deleted " + d["path"])
		}
		use("path", "folder")
	case "file.revoked":
		add("Transfer of " + d["path"] + " cut off")
		use("path")
	}
	if r := d["reason"]; r != "" {
		add(strings.TrimSuffix(r, "."))
		use("reason")
	}
	// Anything else: "name value", in a stable order, words for the names.
	var rest []string
	for k := range d {
		if !used[k] && k != "session" {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		v := d[k]
		if k == "bytes" || k == "size" || strings.HasPrefix(k, "bytes_") {
			v = bytes(k)
		}
		add(strings.ReplaceAll(k, "_", " ") + " " + v)
	}
	out := strings.Join(parts, ", ")
	if out != "" {
		out = strings.ToUpper(out[:1]) + out[1:]
	}
	return out
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// formatSize writes a byte count as people read it: 512 B, 1.5 KiB, 4.0 MiB.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
