package permissions

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRedisIdempotencyKeys: of two nodes claiming one key, the second gets
// the first's record; only the record's holder lets the key go; a kept
// answer replaces the claim; and while Redis is down the calls fail at
// once, saying so.
func TestRedisIdempotencyKeys(t *testing.T) {
	srv := startRedis(t)
	n1 := openRedis(t, srv, "n1", DefaultLimits())
	n2 := openRedis(t, srv, "n2", DefaultLimits())
	ctx := context.Background()
	if _, first, err := n1.ClaimIdempotency(ctx, "k", []byte("n1 pending"), time.Minute); err != nil || !first {
		t.Fatalf("first claim: first=%v %v", first, err)
	}
	held, first, err := n2.ClaimIdempotency(ctx, "k", []byte("n2 pending"), time.Minute)
	if err != nil || first || string(held) != "n1 pending" {
		t.Fatalf("second claim: %q first=%v %v; want n1's record", held, first, err)
	}
	if err := n2.ReleaseIdempotency(ctx, "k", []byte("n2 pending")); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := n2.GetIdempotency(ctx, "k"); err != nil || !ok || string(rec) != "n1 pending" {
		t.Fatalf("after another's release: %q %v %v; want n1's claim kept", rec, ok, err)
	}
	if err := n1.FinishIdempotency(ctx, "k", []byte("n1 answer"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := n2.GetIdempotency(ctx, "k"); err != nil || !ok || string(rec) != "n1 answer" {
		t.Fatalf("after the answer: %q %v %v", rec, ok, err)
	}
	if err := n1.ReleaseIdempotency(ctx, "k", []byte("n1 pending")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := n1.GetIdempotency(ctx, "k"); !ok {
		t.Fatal("a release of the claim dropped the answer that replaced it")
	}
	n1.ClaimIdempotency(ctx, "gone", []byte("r"), time.Minute)
	if err := n1.ReleaseIdempotency(ctx, "gone", []byte("r")); err != nil {
		t.Fatal(err)
	}
	if _, first, err := n2.ClaimIdempotency(ctx, "gone", []byte("r2"), 50*time.Millisecond); err != nil || !first {
		t.Fatalf("a released key: first=%v %v", first, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, ok, _ := n1.GetIdempotency(ctx, "gone"); ok; _, ok, _ = n1.GetIdempotency(ctx, "gone") {
		if time.Now().After(deadline) {
			t.Fatal("a claim outlived its ttl")
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv.kill()
	if _, _, err := n1.ClaimIdempotency(ctx, "x", []byte("r"), time.Minute); err == nil {
		t.Fatal("a claim with Redis dead succeeded")
	}
	if _, _, err := n1.ClaimIdempotency(ctx, "x", []byte("r"), time.Minute); !errors.Is(err, ErrRedisDown) {
		t.Fatalf("the next claim: %v; want ErrRedisDown at once", err)
	}
}
