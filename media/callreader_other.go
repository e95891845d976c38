//go:build !linux

package media

// callReader is Linux's (callreader_linux.go); elsewhere every direction
// has a reader of its own.
type callReader struct{}

func newCallReader(*Bridge, [2]*portPair) (*callReader, error) { return nil, errCallReaderOff }

func (*callReader) attach([2]*direction) {}
func (*callReader) run() error           { return nil }
func (*callReader) stop()                {}
func (*callReader) close()               {}
