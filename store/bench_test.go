package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shellgate/shellgate/store"
)

// BenchmarkClaimTicket measures issuing and claiming terminal tickets, the database
// work of every terminal open, on the engine of the current pass (run with -bench: the
// suite runs once per engine, so the two figures print one after the other).
func BenchmarkClaimTicket(b *testing.B) {
	ctx := context.Background()
	st := store.OpenTest(b)
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	if err := st.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("t", n.Add(1))
			if err := st.CreateTicket(ctx, &store.Ticket{ID: id, UserID: u.ID, WebSessionID: "ws", StackID: 1, ServerID: 2,
				CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
				b.Fatal(err)
			}
			if _, err := st.ClaimTicket(ctx, id, u.ID, "ws", 2, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWebSessionLookup measures the lookup every signed-in request makes.
func BenchmarkWebSessionLookup(b *testing.B) {
	ctx := context.Background()
	st := store.OpenTest(b)
	u := &store.User{Username: "a", PasswordHash: "h", Role: store.RoleMember}
	if err := st.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if err := st.CreateWebSession(ctx, &store.WebSession{ID: "s", UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := st.WebSessionByID(ctx, "s", now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
