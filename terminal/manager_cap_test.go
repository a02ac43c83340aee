package terminal

import (
	"errors"
	"testing"
)

// TestManagerCapsSessionsInTheProcess: besides ten per person, the process holds
// at most MaxTotal sessions, so many accounts (or one script with many) cannot
// grow it without bound; a freed slot is usable again.
func TestManagerCapsSessionsInTheProcess(t *testing.T) {
	m := NewManager(Config{MaxPerUser: 2, MaxTotal: 3})
	steps := []struct {
		user    string
		release bool
		wantErr bool
	}{
		{user: "a"}, {user: "a"},
		{user: "a", wantErr: true}, // per person
		{user: "b"},
		{user: "c", wantErr: true}, // in the process
		{user: "a", release: true},
		{user: "c"},
	}
	for i, st := range steps {
		if st.release {
			m.release(st.user)
			continue
		}
		err := m.reserve(st.user)
		if (err != nil) != st.wantErr || (err != nil && !errors.Is(err, ErrTooManySessions)) {
			t.Fatalf("step %d (%s): %v, want error %v", i, st.user, err, st.wantErr)
		}
	}
}
