package store

import (
	"context"
	"testing"
	"time"
)

func TestRecordingsAndSSHLog(t *testing.T) {
	ctx := context.Background()
	db := OpenTest(t)
	st := &Stack{Name: "prod", CreatedAt: time.Now()}
	if err := db.CreateStack(ctx, st); err != nil {
		t.Fatal(err)
	}
	rs, err := db.StackRecording(ctx, st.ID)
	if err != nil || !rs.Record || rs.Input {
		t.Fatalf("defaults %+v %v: recording on, input off", rs, err)
	}
	if err := db.SetStackRecording(ctx, st.ID, RecordingSettings{Record: false, Input: true}); err != nil {
		t.Fatal(err)
	}
	if rs, _ := db.StackRecording(ctx, st.ID); rs.Record || !rs.Input {
		t.Fatalf("after set %+v", rs)
	}

	old := time.Now().Add(-100 * 24 * time.Hour)
	for i, id := range []string{"OLD", "NEW"} {
		at := time.Now()
		if i == 0 {
			at = old
		}
		if err := db.CreateRecording(ctx, &Recording{SessionID: id, UserID: 1, Username: "alice", StackID: st.ID, ServerID: 2,
			ServerName: "web-1", Login: "deploy", Path: "x/" + id + ".cast", StartedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.FinishRecording(ctx, "NEW", time.Now(), 42); err != nil {
		t.Fatal(err)
	}
	r, err := db.RecordingBySession(ctx, "NEW")
	if err != nil || r.Size != 42 || r.EndedAt.IsZero() || r.Username != "alice" {
		t.Fatalf("%+v %v", r, err)
	}
	list, err := db.RecordingsBefore(ctx, time.Now().Add(-90*24*time.Hour), 10)
	if err != nil || len(list) != 1 || list[0].SessionID != "OLD" {
		t.Fatalf("retention list %+v %v", list, err)
	}
	if err := db.DeleteRecording(ctx, "OLD"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RecordingBySession(ctx, "OLD"); err != ErrNotFound {
		t.Fatalf("deleted recording: %v", err)
	}

	l := &StackLogLine{StackID: st.ID, At: time.Now(), Tab: LogSSH, Line: "Accepted publickey for deploy"}
	for i, want := range []bool{true, false} {
		added, err := db.AppendStackLogOnce(ctx, l, "k1")
		if err != nil || added != want {
			t.Fatalf("append %d: %v %v", i, added, err)
		}
	}
	lines, _ := db.ListStackLog(ctx, st.ID, LogSSH, 10)
	if len(lines) != 1 {
		t.Fatalf("dedup failed: %+v", lines)
	}
}
