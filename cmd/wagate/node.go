package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/wagate/wagate/configs"
)

// nodeFile, in data_dir, names the node that owns the directory and holds
// the lock that keeps a second wagate out of it.
const nodeFile = "node"

// claimDataDir locks data_dir for this process and checks that it belongs
// to this node. Each node needs its own data_dir: the journal of live
// calls, the events database and the permission file are one node's; a
// second process on them would hang up the first one's calls after a
// restart or count its calls twice. With several nodes (permissions in
// Redis) a data_dir of another node_id is refused; a single node whose id
// changed (a new host name, say) takes its directory over with a warning.
// The lock lasts as long as the returned file stays open.
func claimDataDir(cfg *configs.Config, log *slog.Logger) (*os.File, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	path := filepath.Join(cfg.DataDir, nodeFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data_dir %s is in use by another running wagate (node %q): give each node its own data_dir",
				cfg.DataDir, bytes.TrimSpace(owner))
		}
		return nil, fmt.Errorf("data_dir %s: lock: %w", cfg.DataDir, err)
	}
	owner, err := os.ReadFile(path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	if o := string(bytes.TrimSpace(owner)); o != "" && o != cfg.NodeID {
		if cfg.Permissions.Enabled && cfg.Permissions.Backend == configs.PermissionBackendRedis {
			f.Close()
			return nil, fmt.Errorf("data_dir %s belongs to node %q and this is node %q: give each node its own data_dir "+
				"(to hand the directory over on purpose, delete %s)", cfg.DataDir, o, cfg.NodeID, path)
		}
		log.Warn("data_dir was another node's; taking it over", "data_dir", cfg.DataDir, "was", o, "node_id", cfg.NodeID)
	}
	if string(bytes.TrimSpace(owner)) != cfg.NodeID {
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt([]byte(cfg.NodeID+"\n"), 0)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
		}
	}
	return f, nil
}
