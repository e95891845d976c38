package permissions

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server (Debian's package) on loopback, with
// its append-only file fsynced on every write, as production should run it.
type redisServer struct {
	t      testing.TB
	addr   string
	dir    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts redis-server in a temp dir on a free loopback port. It
// fails (does not skip) when redis-server is missing: `make test` installs
// it.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (%v): run `make test`, which installs it (package redis-server)", err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &redisServer{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.args = append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log")}, extra...)
	s.start(bin)
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Logf("redis log:\n%s", tailBytes(log, 40))
		}
	})
	return s
}

func (s *redisServer) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(s.cmd, s.exited)
	cli := redis.NewClient(&redis.Options{Addr: s.addr, DisableIdentity: true, Protocol: 2})
	defer cli.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := cli.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not answering: %v", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends redis-server with SIGKILL, as a crash would.
func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// restart kills redis-server and starts it again on the same port and
// files.
func (s *redisServer) restart() {
	s.t.Helper()
	s.kill()
	bin, _ := exec.LookPath("redis-server")
	s.start(bin)
}

func tailBytes(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// openRedis opens a Redis store for node on s.
func openRedis(t testing.TB, s *redisServer, node string, lim Limits, mod ...func(*RedisOptions)) *Redis {
	t.Helper()
	// A generous operation timeout: every write is fsynced, and on a
	// machine running every package's tests at once an fsync can take
	// longer than the 200 ms these tests had, which turned an admission
	// into Unavailable. TestRedisSlow sets a short one: it is its subject.
	o := RedisOptions{Addr: s.addr, NodeID: node, Limits: lim, SlotTTL: time.Second, Timeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, m := range mod {
		m(&o)
	}
	r, err := OpenRedis(context.Background(), o)
	if err != nil {
		t.Fatalf("open redis store %s: %v", node, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func reserve(t testing.TB, s Store, k Key, want Verdict) (Decision, Reservation) {
	t.Helper()
	d, res := s.Reserve(k)
	if d.Verdict != want {
		t.Fatalf("reserve %v = %v (%d %s), want %v", k, d.Verdict, d.Code, d.Reason, want)
	}
	if (res != nil) != (want == Allow) {
		t.Fatalf("reserve %v: reservation %v with verdict %v", k, res, d.Verdict)
	}
	return d, res
}

func lookup(t testing.TB, s Store, k Key) Entry {
	t.Helper()
	en, ok, err := s.Lookup(k)
	if err != nil || !ok {
		t.Fatalf("lookup %v: %v %v", k, ok, err)
	}
	return en
}
