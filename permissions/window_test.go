package permissions

import "testing"

func TestWindow(t *testing.T) {
	var w window
	for i := int64(1); i <= 5; i++ {
		w.add(i*10, 4) // 10 20 30 40 50, max 4: 10 is overwritten
	}
	if w.len() != 4 || w.oldest() != 20 || w.newest() != 50 {
		t.Fatalf("after 5 adds at max 4: len %d oldest %d newest %d", w.len(), w.oldest(), w.newest())
	}
	if got := w.countAfter(30); got != 2 {
		t.Errorf("countAfter(30) = %d, want 2", got)
	}
	if got, ok := w.firstAfter(25); !ok || got != 30 {
		t.Errorf("firstAfter(25) = %d, %v", got, ok)
	}
	w.prune(30)
	if w.len() != 2 || w.oldest() != 40 {
		t.Fatalf("after prune(30): len %d oldest %d", w.len(), w.oldest())
	}
	w.add(45, 4) // clock stepped back: kept in order as 50
	if w.newest() != 50 || w.len() != 3 {
		t.Errorf("backwards add: newest %d len %d", w.newest(), w.len())
	}
	w.prune(100)
	if w.len() != 0 {
		t.Errorf("prune all: len %d", w.len())
	}
	w.add(1, 0) // max 0 records nothing
	if w.len() != 0 {
		t.Errorf("max 0 recorded an event")
	}
	w.reset()
	if w.buf != nil {
		t.Errorf("reset kept memory")
	}
}

func TestWindowGrowsLazily(t *testing.T) {
	var w window
	w.add(1, 10000)
	if len(w.buf) > 2 {
		t.Errorf("one event allocated %d slots", len(w.buf))
	}
	for i := int64(2); i <= 10000; i++ {
		w.add(i, 10000)
	}
	if len(w.buf) != 10000 || w.len() != 10000 || w.oldest() != 1 {
		t.Errorf("full window: cap %d len %d oldest %d", len(w.buf), w.len(), w.oldest())
	}
}

// TestWindowRemove: taking an event back keeps the rest in order, also
// when the ring has wrapped, and an event no longer held is not found.
func TestWindowRemove(t *testing.T) {
	var w window
	for i := int64(1); i <= 4; i++ {
		w.add(i*10, 4)
	}
	w.prune(20)  // 30 40 left, head in the middle of the ring
	w.add(50, 4) // wraps
	w.add(60, 4) // 30 40 50 60
	if !w.remove(40) {
		t.Fatal("remove(40) found nothing")
	}
	if w.remove(20) {
		t.Error("remove(20) found an event that left the window")
	}
	var got []int64
	for i := range w.len() {
		got = append(got, w.at(i))
	}
	if len(got) != 3 || got[0] != 30 || got[1] != 50 || got[2] != 60 {
		t.Errorf("after remove(40): %v, want [30 50 60]", got)
	}
	if t7 := w.add(70, 4); t7 != 70 || w.newest() != 70 || w.len() != 4 {
		t.Errorf("add after remove: %d newest %d len %d", t7, w.newest(), w.len())
	}
}
