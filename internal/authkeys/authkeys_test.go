package authkeys

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	blobA = "AAAAC3NzaC1lZDI1NTE5AAAAIBkNZ7ZfKi3YVsYIY3l8sNw0kFkfKyUqGvN3aQpQyN1A"
	blobB = "AAAAC3NzaC1lZDI1NTE5AAAAIHs2pQ0vNqV0YbVq3A2b0eTq6o8Ybm1iJwq5fV6m1zRk"
	ours  = "ssh-ed25519 " + blobA + " shellgate:key=42 My_office_Laptop"
	their = "ssh-ed25519 " + blobB + " bob@desk"
)

func TestLine(t *testing.T) {
	got, err := Line("ssh-ed25519 "+blobA+" alice@laptop", "42", "My_office_Laptop")
	if err != nil || got != ours {
		t.Fatalf("Line = %q, %v", got, err)
	}
	got, err = Line("ssh-ed25519 "+blobA, "7", "")
	if err != nil || got != "ssh-ed25519 "+blobA+" shellgate:key=7" {
		t.Fatalf("Line without name = %q, %v", got, err)
	}
	bad := []struct{ key, id, name string }{
		{"ssh-ed25519 " + blobA, "", ""},
		{"ssh-ed25519 " + blobA, "4 2", ""},
		{"ssh-ed25519 " + blobA, "42", "bad name"},
		{"ssh-ed25519 " + blobA + "\nssh-ed25519 x", "42", ""},
		{"ssh-ed25519", "42", ""},
		{`from="x" ssh-ed25519 ` + blobA, "42", ""},
	}
	for _, b := range bad {
		if _, err := Line(b.key, b.id, b.name); err == nil {
			t.Errorf("Line(%q, %q, %q) accepted", b.key, b.id, b.name)
		}
	}
}

func TestAdd(t *testing.T) {
	renamed := "ssh-ed25519 " + blobA + " shellgate:key=42 Renamed"
	tests := []struct {
		name    string
		in      string
		line    string
		want    string
		outcome Outcome
	}{
		{"empty file", "", ours, ours + "\n", OutcomeAppended},
		{"append after newline", their + "\n", ours, their + "\n" + ours + "\n", OutcomeAppended},
		{"no final newline", their, ours, their + "\n" + ours, OutcomeAppended},
		{"crlf file", "# c\r\n" + their + "\r\n", ours, "# c\r\n" + their + "\r\n" + ours + "\r\n", OutcomeAppended},
		{"crlf file no final newline", "# c\r\n" + their, ours, "# c\r\n" + their + "\r\n" + ours, OutcomeAppended},
		{"bom", "\xEF\xBB\xBF" + their + "\n", ours, "\xEF\xBB\xBF" + their + "\n" + ours + "\n", OutcomeAppended},
		{"bom only", "\xEF\xBB\xBF", ours, "\xEF\xBB\xBF" + ours + "\n", OutcomeAppended},
		{"blank lines and comments kept", "\n\n# keys\n  \n\t" + their + "  \n\n", ours,
			"\n\n# keys\n  \n\t" + their + "  \n\n" + ours + "\n", OutcomeAppended},
		{"already there", their + "\n" + ours + "\n# end\n", ours, their + "\n" + ours + "\n# end\n", OutcomeUnchanged},
		{"already there last without newline", their + "\n" + ours, ours, their + "\n" + ours, OutcomeUnchanged},
		{"replace in place keeps crlf", "a\r\n" + ours + "\r\nb\r\n", renamed, "a\r\n" + renamed + "\r\nb\r\n", OutcomeReplaced},
		{"replace in place, no final newline", "a\n" + ours, renamed, "a\n" + renamed, OutcomeReplaced},
		{"replace our line that gained options", `restrict ` + ours + "\n", ours, ours + "\n", OutcomeReplaced},
		{"duplicates of ours collapsed", ours + "\nx\n" + ours + "\n", ours, ours + "\nx\n", OutcomeReplaced},
		{"other key id with same blob", "ssh-ed25519 " + blobA + " shellgate:key=41\n", ours,
			"ssh-ed25519 " + blobA + " shellgate:key=41\n" + ours + "\n", OutcomeAppended},
		{"key id prefix is not ours", "ssh-ed25519 " + blobB + " shellgate:key=420\n", ours,
			"ssh-ed25519 " + blobB + " shellgate:key=420\n" + ours + "\n", OutcomeAppended},
		{"marker not first comment word is not ours", "ssh-ed25519 " + blobB + " x shellgate:key=42\n", ours,
			"ssh-ed25519 " + blobB + " x shellgate:key=42\n" + ours + "\n", OutcomeAppended},
		{"marker inside quoted option is not ours", `command="echo shellgate:key=42" ssh-ed25519 ` + blobB + " c\n", ours,
			`command="echo shellgate:key=42" ssh-ed25519 ` + blobB + " c\n" + ours + "\n", OutcomeAppended},
		{"same key added by hand", "ssh-ed25519 " + blobA + " alice@laptop\n", ours, "ssh-ed25519 " + blobA + " alice@laptop\n", OutcomePresentUnmanaged},
		{"same key by hand with options", `from="10.0.0.0/8",no-pty ssh-ed25519 ` + blobA + "\n", ours,
			`from="10.0.0.0/8",no-pty ssh-ed25519 ` + blobA + "\n", OutcomePresentUnmanaged},
		{"commented-out copy does not count", "#ssh-ed25519 " + blobA + "\n", ours, "#ssh-ed25519 " + blobA + "\n" + ours + "\n", OutcomeAppended},
		{"stray CR at end", "a\r", ours, "a\r\r\n" + ours, OutcomeAppended},
		{"mixed endings follow the first", "a\nb\r\n", ours, "a\nb\r\n" + ours + "\n", OutcomeAppended},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, outcome, err := Add([]byte(tc.in), tc.line, "42")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Add:\n got %q\nwant %q", got, tc.want)
			}
			if outcome != tc.outcome {
				t.Errorf("outcome = %v, want %v", outcome, tc.outcome)
			}
			if outcome.Changed() != (tc.in != tc.want) {
				t.Errorf("Changed() = %v but content changed = %v", outcome.Changed(), tc.in != tc.want)
			}
			// Adding again is a no-op.
			again, outcome2, _ := Add(got, tc.line, "42")
			if !bytes.Equal(again, got) || outcome2.Changed() {
				t.Errorf("second Add changed the content: %q (%v)", again, outcome2)
			}
		})
	}
}

func TestAddRejects(t *testing.T) {
	tests := []struct{ line, id string }{
		{ours, "41"},                            // marker of another id
		{ours, "4 2"},                           // invalid id
		{"ssh-ed25519 " + blobA, "42"},          // no marker
		{ours + "\nssh-ed25519 " + blobB, "42"}, // injection of a second line
		{ours + "\r", "42"},
		{"restrict " + ours, "42"}, // options are decided by Line, not smuggled in
		{"shellgate:key=42", "42"},
	}
	for _, tc := range tests {
		if _, _, err := Add([]byte(their+"\n"), tc.line, tc.id); !errors.Is(err, ErrInvalidLine) && !errors.Is(err, ErrInvalidKeyID) {
			t.Errorf("Add(%q, %q) err = %v", tc.line, tc.id, err)
		}
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name, in, want string
		changed        bool
	}{
		{"only line", ours + "\n", "", true},
		{"only line no newline", ours, "", true},
		{"middle", "a\n" + ours + "\nb\n", "a\nb\n", true},
		{"middle crlf", "a\r\n" + ours + "\r\nb\r\n", "a\r\nb\r\n", true},
		{"last without newline", "a\n" + ours, "a", true},
		{"last without newline crlf", "a\r\n" + ours, "a", true},
		{"bom kept", "\xEF\xBB\xBF" + ours + "\nb\n", "\xEF\xBB\xBFb\n", true},
		{"all copies", ours + "\n" + their + "\n" + ours + "\n", their + "\n", true},
		{"ours with options", "restrict " + ours + "\n" + their + "\n", their + "\n", true},
		{"other id kept", "ssh-ed25519 " + blobA + " shellgate:key=420\n", "ssh-ed25519 " + blobA + " shellgate:key=420\n", false},
		{"hand-added same key kept", "ssh-ed25519 " + blobA + " me\n", "ssh-ed25519 " + blobA + " me\n", false},
		{"commented marker kept", "# " + ours + "\n", "# " + ours + "\n", false},
		{"no final newline elsewhere", ours + "\n" + their, their, true},
		{"blank lines around kept", "\n" + ours + "\n\n", "\n\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := Remove([]byte(tc.in), "42")
			if string(got) != tc.want || changed != tc.changed {
				t.Errorf("Remove:\n got %q %v\nwant %q %v", got, changed, tc.want, tc.changed)
			}
		})
	}
	if got, changed := Remove([]byte(ours), "bad id"); changed || string(got) != ours {
		t.Error("invalid id removed something")
	}
}

func TestManaged(t *testing.T) {
	content := "# header\n" + their + "\n" + ours + "\r\n\nssh-rsa AAAAB3 shellgate:key=7\n" +
		`command="x shellgate:key=9" ssh-ed25519 ` + blobB + "\nssh-ed25519 " + blobB + " shellgate:key=bad/id\n"
	got := Managed([]byte(content))
	want := []ManagedLine{{"42", 3}, {"7", 5}}
	if len(got) != len(want) {
		t.Fatalf("Managed = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Managed[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// TestDetachLeavesHandAddedKey: an administrator put the same key in by
// hand, restricted with from=. Attaching through shellgate must neither
// add an unrestricted copy (which would bypass from=) nor let a later
// detach remove the administrator's line.
func TestDetachLeavesHandAddedKey(t *testing.T) {
	orig := []byte(`from="10.0.0.0/8" ssh-ed25519 ` + blobA + " alice\n")
	added, outcome, err := Add(orig, ours, "42")
	if err != nil || outcome != OutcomePresentUnmanaged || !bytes.Equal(added, orig) {
		t.Fatalf("Add = %q, %v, %v", added, outcome, err)
	}
	removed, changed := Remove(added, "42")
	if changed || !bytes.Equal(removed, orig) {
		t.Fatalf("Remove = %q, %v", removed, changed)
	}
}

func FuzzAddRemove(f *testing.F) {
	for _, s := range []string{"", "a", "a\n", "a\r\n", "a\r", "\xEF\xBB\xBF", their + "\r\n# x", "\n\n", `command="a b" ssh-rsa AAAA c`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		if bytes.Contains(content, []byte(MarkerPrefix)) {
			t.Skip()
		}
		out, outcome, err := Add(content, ours, "42")
		if err != nil {
			t.Fatal(err)
		}
		switch outcome {
		case OutcomeAppended:
			if !bytes.HasPrefix(out, content) {
				t.Fatalf("Add did not keep the content as a prefix: %q -> %q", content, out)
			}
			m := Managed(out)
			if len(m) != 1 || m[0].KeyID != "42" {
				t.Fatalf("Managed after Add = %v", m)
			}
		case OutcomePresentUnmanaged:
			if !bytes.Equal(out, content) {
				t.Fatal("content changed although the key was present")
			}
		default:
			t.Fatalf("unexpected outcome %v for content without markers", outcome)
		}
		back, _ := Remove(out, "42")
		if !bytes.Equal(back, content) {
			t.Fatalf("Remove(Add(c)) != c:\n c   %q\n add %q\n rm  %q", content, out, back)
		}
		if strings.Count(string(out), "\n")-strings.Count(string(content), "\n") > 1 {
			t.Fatal("Add inserted more than one line break")
		}
	})
}
