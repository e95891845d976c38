// CPU pinning for -wagate-cpu: the "2,000 held calls on one core"
// measured with wagate alone on its core, so that the generator's threads
// and wagate's do not take turns on the same CPU (each wake-up of either
// can then wait for the other's time slice, which is the OS's lateness,
// not wagate's).

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinSelfAway moves every thread of this process off cpu (threads made
// later inherit it from the thread that makes them).
func pinSelfAway(cpu int) error {
	var set unix.CPUSet
	for c := range runtime.NumCPU() {
		if c != cpu {
			set.Set(c)
		}
	}
	if set.Count() == 0 {
		return fmt.Errorf("-wagate-cpu %d: no CPU left for the generator", cpu)
	}
	// Twice: a thread the runtime starts while the first pass runs may
	// have copied the old mask.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return fmt.Errorf("pin thread %d: %w", tid, err)
			}
		}
	}
	return nil
}
