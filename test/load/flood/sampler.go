package main

// A sampler of wagate's resident memory, open file descriptors and
// threads every 100 ms, labelled with the phase of the run, so each
// phase's peak can be reported.

import (
	"sync"
	"time"
)

type sample struct {
	phase   string
	rssKiB  int64
	fds     int // -1 when it could not be read
	threads int64
}

type sampler struct {
	pid   int
	mu    sync.Mutex
	phase string
	all   []sample
	stopc chan struct{}
	done  chan struct{}
}

func startSampler(pid int, phase string) *sampler {
	s := &sampler{pid: pid, phase: phase, stopc: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	// Bounded by the longest run this tool allows.
	for n := 0; n < int(maxRunTime/(100*time.Millisecond)); n++ {
		rss, _, threads, err := memKiB(s.pid)
		if err == nil {
			fds := -1
			if f, err := fdCount(s.pid); err == nil {
				fds = f
			}
			s.mu.Lock()
			s.all = append(s.all, sample{phase: s.phase, rssKiB: rss, fds: fds, threads: threads})
			s.mu.Unlock()
		}
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
	}
}

func (s *sampler) stop() {
	close(s.stopc)
	<-s.done
}

// peak is the highest RSS, descriptor count and thread count sampled in
// the given phases (all phases when none are named).
func (s *sampler) peak(phases ...string) (rssKiB int64, fds int, threads int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fds = -1
	for _, x := range s.all {
		if len(phases) > 0 && !contains(phases, x.phase) {
			continue
		}
		rssKiB = max(rssKiB, x.rssKiB)
		fds = max(fds, x.fds)
		threads = max(threads, x.threads)
	}
	return rssKiB, fds, threads
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
