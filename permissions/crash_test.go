package permissions

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashEnv names the store the re-executed test binary grants into before
// it kills itself.
const crashEnv = "WAGATE_PERMISSIONS_CRASH_STORE"

// TestCrashChild is the child half of TestGrantSurvivesKill9: it does
// nothing unless the parent set crashEnv.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only runs as the child of TestGrantSurvivesKill9")
	}
	c, err := Open(path, DefaultLimits(), SystemClock{}, nil)
	if err != nil {
		os.Exit(3)
	}
	if err := c.Grant(Key{PhoneNumberID: "106540352242922", User: "+16505551234"}, true, time.Time{}, "crash"); err != nil {
		os.Exit(4)
	}
	if err := c.Grant(Key{PhoneNumberID: "106540352242922", User: "US.42"}, false, time.Time{}, "crash"); err != nil {
		os.Exit(4)
	}
	// A connected call and an unanswered one: counters are as durable as
	// grants.
	for _, o := range []Outcome{Answered, Unanswered} {
		_, tk := c.Admit(Key{PhoneNumberID: "106540352242922", User: "+16505551234"})
		if tk == nil {
			os.Exit(5)
		}
		if o == Answered {
			tk.Connected()
		}
		tk.Finish(o)
	}
	// Tell the parent, then die without Close, deferred calls or flushing.
	os.Stdout.WriteString("granted\n")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestGrantSurvivesKill9: a grant, and a call's counters, are durable once
// the call that made them returns, even if the process is killed with
// SIGKILL at the next instruction.
func TestGrantSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "permissions.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	err = cmd.Wait()
	if strings.TrimSpace(line) != "granted" {
		t.Fatalf("child did not grant: %q, %v", line, err)
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
	c, err := Open(path, DefaultLimits(), SystemClock{}, nil)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer c.Close()
	if en, ok := c.Get(Key{PhoneNumberID: "106540352242922", User: "+16505551234"}); !ok || en.Status != StatusPermanent || en.Source != "crash" ||
		en.ConnectedCalls24h != 1 || en.UnansweredStreak != 1 {
		t.Errorf("permanent grant and its counters after kill -9: %+v, %v", en, ok)
	}
	if en, ok := c.Get(Key{PhoneNumberID: "106540352242922", User: "US.42"}); !ok || en.Status != StatusTemporary {
		t.Errorf("temporary grant after kill -9: %+v, %v", en, ok)
	}
}
