package permissions

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store is the durable half of the cache: one bbolt bucket of records keyed
// "phone_number_id/user". bbolt commits with fsync, so a record is on disk
// when put returns; a crash mid-commit leaves the previous state, never a
// torn one.
type store struct {
	db *bolt.DB
}

var (
	bucketPermissions = []byte("permissions")
	bucketMeta        = []byte("meta")
	keySchema         = []byte("schema")
)

// schemaVersion is written once into the meta bucket; a file from a newer
// wagate is refused rather than misread.
const schemaVersion = 1

// record is what survives a restart: the permission, not the counters.
type record struct {
	state   state
	expires int64 // Unix ns; 0 when not temporary
	granted int64 // Unix ns of the grant; 0 when none
	updated int64 // Unix ns of the last grant or revocation
	source  string
}

// recordV1 layout: version, state, expires, granted, updated (big-endian
// int64 each), then the source as the rest of the value.
const (
	recordVersion = 1
	recordHeader  = 2 + 3*8
)

func (r record) encode() []byte {
	b := make([]byte, recordHeader+len(r.source))
	b[0] = recordVersion
	b[1] = byte(r.state)
	binary.BigEndian.PutUint64(b[2:], uint64(r.expires))
	binary.BigEndian.PutUint64(b[10:], uint64(r.granted))
	binary.BigEndian.PutUint64(b[18:], uint64(r.updated))
	copy(b[recordHeader:], r.source)
	return b
}

func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeader {
		return record{}, fmt.Errorf("record of %d bytes is shorter than its %d-byte header", len(b), recordHeader)
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("record version %d, this wagate reads %d", b[0], recordVersion)
	}
	r := record{
		state:   state(b[1]),
		expires: int64(binary.BigEndian.Uint64(b[2:])),
		granted: int64(binary.BigEndian.Uint64(b[10:])),
		updated: int64(binary.BigEndian.Uint64(b[18:])),
		source:  string(b[recordHeader:]),
	}
	if r.state > stPermanent {
		return record{}, fmt.Errorf("record state %d unknown", r.state)
	}
	return r, nil
}

func openStore(path string) (*store, error) {
	// The data directory may not exist on a fresh machine.
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("permission store directory: %w", err)
	}
	// The timeout turns a second wagate on the same file (bbolt's flock)
	// into an error at start-up instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open permission store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketPermissions); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 1 || v[0] != schemaVersion {
				return fmt.Errorf("schema version %v, this wagate reads %d", v, schemaVersion)
			}
			return nil
		}
		return meta.Put(keySchema, []byte{schemaVersion})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("permission store %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// put writes one record durably.
func (s *store) put(k Key, r record) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPermissions).Put([]byte(k.String()), r.encode())
	})
	if err != nil {
		return fmt.Errorf("persist permission %s: %w", k, err)
	}
	return nil
}

// deleteKeys removes records in one transaction.
func (s *store) deleteKeys(keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPermissions)
		for _, k := range keys {
			if err := b.Delete([]byte(k.String())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %d permission records: %w", len(keys), err)
	}
	return nil
}

// errSkip marks a stored record that load could not use.
var errSkip = errors.New("unusable record")

// load calls fn for every record. A record that does not decode or whose
// key does not parse is reported to bad and skipped: one damaged record
// must not keep wagate from starting.
func (s *store) load(fn func(Key, record), bad func(key []byte, err error)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPermissions).ForEach(func(kb, v []byte) error {
			k, err := parseStoreKey(string(kb))
			if err != nil {
				bad(kb, err)
				return nil
			}
			r, err := decodeRecord(v)
			if err != nil {
				bad(kb, err)
				return nil
			}
			fn(k, r)
			return nil
		})
	})
}

func parseStoreKey(s string) (Key, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			k, err := NormalizeKey(s[:i], s[i+1:])
			if err != nil {
				return Key{}, err
			}
			if k.String() != s {
				return Key{}, fmt.Errorf("%w: stored key %q is not canonical", errSkip, s)
			}
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("%w: stored key %q has no '/'", errSkip, s)
}
