package permissions

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// ext is the embedded store's state beside its pairs: BSUID aliases,
// restricted numbers, applied webhook message ids, and the counters of
// Stats.
type ext struct {
	mu           sync.RWMutex
	aliases      map[string]string // "pnid/BSUID" → "+phone"
	restrictions map[string]Restriction
	seen         map[string]int64    // webhook message id → applied at (Unix ns)
	lifts        map[string]lift     // phone-number-id → the operator's last lift of its pause
	metaSent     map[string]metaSent // phone-number-id → when Meta sent the update in force

	// restrictMu makes a pause's check against the lift and its write
	// one step, as the Redis store's script does: a lift cannot slip
	// between them.
	restrictMu sync.Mutex

	errors, learned, learnedCap, stale, replayed, restricted, staleMeta atomic.Uint64
}

func (x *ext) init() {
	x.aliases = make(map[string]string)
	x.restrictions = make(map[string]Restriction)
	x.seen = make(map[string]int64)
	x.lifts = make(map[string]lift)
	x.metaSent = make(map[string]metaSent)
}

// IsBSUID reports whether a normalised user is a business-scoped user id
// rather than a phone number.
func IsBSUID(user string) bool { return user != "" && user[0] != '+' && !isDigit(user[0]) }

// resolve maps a key naming a user by BSUID to the key of the user's phone
// number, once a webhook linked the two; any other key is returned as is.
// Invalid keys are returned unchanged for the caller's own validation.
func (c *Cache) resolve(k Key) Key {
	if u := strings.TrimSpace(k.User); u == "" || !isLetter(u[0]) {
		return k
	}
	n, err := k.Normalize()
	if err != nil {
		return k
	}
	c.ext.mu.RLock()
	phone, ok := c.ext.aliases[n.String()]
	c.ext.mu.RUnlock()
	if !ok {
		return n
	}
	return Key{PhoneNumberID: n.PhoneNumberID, User: phone}
}

// link records that bsuid and phone are one user of the business number,
// durably, and moves a permission stored under the BSUID to the phone
// number when it is newer than the phone number's own. Counters kept under
// the BSUID (calls a dialer addressed to it before the link) are not
// merged; they lapse with their windows.
func (c *Cache) link(pnid, bsuid, phone string) error {
	bk, err := NormalizeKey(pnid, bsuid)
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	pk, err := NormalizeKey(pnid, phone)
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if !IsBSUID(bk.User) || IsBSUID(pk.User) {
		return fmt.Errorf("link %s to %s: %w: want a BSUID and a phone number", bk.User, pk.User, ErrInvalidKey)
	}
	c.ext.mu.RLock()
	cur, known := c.ext.aliases[bk.String()]
	c.ext.mu.RUnlock()
	if known && cur == pk.User {
		return nil
	}
	if c.store != nil {
		err := c.store.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAliases).Put([]byte(bk.String()), []byte(pk.User))
		})
		if err != nil {
			c.ext.errors.Add(1)
			return fmt.Errorf("persist alias %s = %s: %w", bk, pk.User, err)
		}
	}
	c.ext.mu.Lock()
	c.ext.aliases[bk.String()] = pk.User
	c.ext.mu.Unlock()
	c.log.Info("call permission: BSUID linked to phone number", "phone_number_id", pnid, "bsuid", bk.User, "user", pk.User)
	return c.adopt(bk, pk)
}

// adopt moves the permission held under from (a BSUID) to to (its phone
// number) when from's is the newer, and forgets from's record.
func (c *Cache) adopt(from, to Key) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	fmk, fsh := c.key(from, false)
	if fsh == nil {
		return nil
	}
	fsh.mu.Lock()
	fe := fsh.m[fmk]
	var rec record
	has := fe != nil && fe.persisted
	if has {
		rec = record{state: fe.st, expires: fe.expires, granted: fe.granted, updated: fe.updated, source: fe.source}
	}
	fsh.mu.Unlock()
	if !has {
		return nil
	}
	newer := true
	if tmk, tsh := c.key(to, false); tsh != nil {
		tsh.mu.Lock()
		if te := tsh.m[tmk]; te != nil && te.persisted && te.updated >= rec.updated {
			newer = false
		}
		tsh.mu.Unlock()
	}
	if newer {
		if err := c.commit(to, rec); err != nil {
			return err
		}
	}
	if c.store != nil {
		if err := c.store.deleteKeys([]Key{from}); err != nil {
			return err
		}
	}
	fsh.mu.Lock()
	if e := fsh.m[fmk]; e != nil {
		e.apply(record{}, "")
		e.persisted = false
		e.gen++
		if e.idle() {
			delete(fsh.m, fmk)
		}
	}
	fsh.mu.Unlock()
	return nil
}

// loadExt reads the aliases, restrictions and message ids. Open calls it
// single-threaded. Restrictions and message ids that ran out while wagate
// was stopped (or do not decode) are dropped from disk here: the sweep
// only deletes what memory holds, so they would stay in the file for ever.
func (c *Cache) loadExt() error {
	now := c.now()
	var staleRestrict, staleMessages [][]byte
	err := c.store.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			c.ext.aliases[string(k)] = string(v)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketRestrict).ForEach(func(k, v []byte) error {
			if r, ok := decodeRestriction(string(k), v); ok && r.Until.UnixNano() > now {
				c.ext.restrictions[string(k)] = r
			} else {
				staleRestrict = append(staleRestrict, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			if id, ok := strings.CutPrefix(string(k), liftPrefix); ok {
				if l, ok := decodeLift(v); ok && l.at > now-int64(messageRetention) {
					c.ext.lifts[id] = l
					return nil
				}
			} else if id, ok := strings.CutPrefix(string(k), metaSentPrefix); ok {
				if m, ok := decodeMetaSent(v); ok && m.at > now-int64(messageRetention) {
					c.ext.metaSent[id] = m
					return nil
				}
			} else if len(v) == 8 {
				if at := int64(beUint64(v)); at > now-int64(messageRetention) {
					c.ext.seen[string(k)] = at
					return nil
				}
			}
			staleMessages = append(staleMessages, append([]byte(nil), k...))
			return nil
		})
	})
	if err != nil || len(staleRestrict)+len(staleMessages) == 0 {
		return err
	}
	err = c.store.db.Update(func(tx *bolt.Tx) error {
		for _, k := range staleRestrict {
			if err := tx.Bucket(bucketRestrict).Delete(k); err != nil {
				return err
			}
		}
		for _, k := range staleMessages {
			if err := tx.Bucket(bucketMessages).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Not fatal: memory ignores them; the next start tries again.
		c.log.Warn("permission store: could not drop pauses and webhook message ids that lapsed while stopped", "error", err)
	}
	return nil
}
