package permissions

import "fmt"

// Status is a permission's state as Meta names it.
type Status string

// The states of a permission.
const (
	StatusNone      Status = "no_permission"
	StatusTemporary Status = "temporary"
	StatusPermanent Status = "permanent"
)

// ParseStatus checks a status name.
func ParseStatus(s string) (Status, error) {
	switch Status(s) {
	case StatusNone, StatusTemporary, StatusPermanent:
		return Status(s), nil
	}
	return "", fmt.Errorf("unknown permission status %q (want no_permission, temporary or permanent)", s)
}

// state is Status in one byte, as entries and the store keep it.
type state uint8

const (
	stNone state = iota
	stTemporary
	stPermanent
)

func (s state) status() Status {
	switch s {
	case stTemporary:
		return StatusTemporary
	case stPermanent:
		return StatusPermanent
	}
	return StatusNone
}
