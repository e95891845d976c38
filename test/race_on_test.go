//go:build race

package test

// raceEnabled: the test binary runs with the race detector, so wagate is
// built with it too.
const raceEnabled = true
