package permissions

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestOpenSkipsDamagedRecords: one bad record is logged and skipped; it
// does not keep wagate from starting.
func TestOpenSkipsDamagedRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	good := Key{PhoneNumberID: "1", User: "+16505551234"}
	if err := st.put(good, record{state: stPermanent, granted: 1, updated: 1, source: "api"}); err != nil {
		t.Fatal(err)
	}
	err = st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPermissions)
		if err := b.Put([]byte("1/+16505550000"), []byte{1}); err != nil { // truncated value
			return err
		}
		if err := b.Put([]byte("no-slash"), record{state: stPermanent}.encode()); err != nil {
			return err
		}
		return b.Put([]byte("1/16505550001"), record{state: stPermanent}.encode()) // not canonical
	})
	if err != nil {
		t.Fatal(err)
	}
	st.close()

	e := &env{clock: newClock(), path: path, logs: &syncBuffer{}, lim: DefaultLimits()}
	e.reopen(t)
	if e.c.Len() != 1 {
		t.Errorf("%d pairs loaded, want 1", e.c.Len())
	}
	if en := mustGet(t, e.c, good); en.Status != StatusPermanent {
		t.Errorf("good record: %+v", en)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{99}) }); err != nil {
		t.Fatal(err)
	}
	st.close()
	if c, err := Open(path, DefaultLimits(), nil, nil); err == nil {
		c.Close()
		t.Fatal("opened a store of schema 99")
	}
}
