package configs

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// Diff lists the key paths whose values differ between two loaded
// configurations, in the order of the schema: "media.port_min",
// "numbers[0].route.user", "endpoints[1].auth". A list whose length changed
// is named as a whole ("numbers", "sip.listen"); a list of plain values
// ("source_cidrs") is compared as one value. Values are compared after
// defaults, so writing a key at its default value is no change.
func Diff(old, new *Config) []string {
	var d differ
	d.walk(reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), "")
	return d.paths
}

type differ struct{ paths []string }

func (d *differ) walk(a, b reflect.Value, path string) {
	switch a.Kind() {
	case reflect.Pointer:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil() || b.IsNil():
			d.paths = append(d.paths, path)
		default:
			d.walk(a.Elem(), b.Elem(), path)
		}
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue // derived values (Prefixes) and the index
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			d.walk(a.Field(i), b.Field(i), join(path, name))
		}
	case reflect.Slice:
		if a.Type().Elem().Kind() != reflect.Struct {
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				d.paths = append(d.paths, path)
			}
			return
		}
		if a.Len() != b.Len() {
			d.paths = append(d.paths, path)
			return
		}
		for i := range a.Len() {
			d.walk(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			d.paths = append(d.paths, path)
		}
	}
}

// liveKeys are the key paths (list indexes written "[]") a running wagate
// applies on SIGHUP, with every key below them. Everything else takes a
// restart: a key added to the schema is restart-only until someone makes
// the running code read it per call and lists it here, so that a reload
// can never claim to apply what it silently ignores.
var liveKeys = []string{
	// Read from the current config on every request or call.
	"endpoints",
	"numbers",
	"hunt_lists",
	"blocklist",
	"sip.ring_timeout",
	"sip.max_calls",
	"sip.unknown_sources",
	"sip.limits",
	"sip.flood",
	"sip.tcp.max_connections",
	"sip.tcp.max_connections_per_source",
	"sip.tcp.idle_timeout",
	"sip.tcp.paced_request_rate",
	"sip.max_cpu_percent",
	"sip.max_late_media_percent",
	// A TLS listener whose address stays re-reads its certificate and key.
	"sip.listen[].cert_file",
	"sip.listen[].key_file",
	// Handed to the running permission cache and logger.
	"permissions.limits",
	"log.level",
	// Which calls are recorded is decided per call; whether a recorder
	// exists at all is decided at start (see RestartKeys).
	"recording.enabled",
}

// recordingSwitches match the keys that can turn recording on.
var recordingSwitches = regexp.MustCompile(`^(recording\.enabled|numbers\[\d+\]\.recording)$`)

// callFlowSwitches match the keys that can bring in a call-flow or queue
// route: a number added, a route or after-hours route that becomes one,
// business hours added with one.
var callFlowSwitches = regexp.MustCompile(`^numbers(\[\d+\](\.hours(\.after_hours)?|\.(route|hours\.after_hours)\.(callflow|queue))?)?$`)

var listIndex = regexp.MustCompile(`\[\d+\]`)

// RestartKeys lists the keys changed from old (the running configuration)
// to new that a running wagate cannot apply: listeners, the media port
// range, the API address, the stores, log.format and so on. An empty list
// means SIGHUP can apply every change; otherwise the reload must be
// refused as a whole, so that the running configuration stays one that
// was written in a file. docs/configuration.md lists which keys are which.
func RestartKeys(old, new *Config) []string {
	var keys []string
	// Recording turned on, or the first call-flow route (which records
	// voicemail), needs the recordings store that start-up creates only
	// when some call may record: when old had neither, it does not run.
	noRecorder := !old.RecordingUsed() && !old.CallFlowUsed()
	startRecorder := noRecorder && new.RecordingUsed()
	startFlows := noRecorder && new.CallFlowUsed()
	for _, p := range Diff(old, new) {
		if recordingSwitches.MatchString(p) {
			if startRecorder {
				keys = append(keys, p)
			}
			continue
		}
		if startFlows && callFlowSwitches.MatchString(p) {
			keys = append(keys, p)
			continue
		}
		if !IsLiveKey(p) {
			keys = append(keys, p)
		}
	}
	return keys
}

// IsLiveKey reports whether a change of the key at path (as Diff names it)
// is applied by a reload, not counting the recording switches, which
// depend on the running configuration (RestartKeys).
func IsLiveKey(path string) bool {
	p := listIndex.ReplaceAllString(path, "[]")
	for _, k := range liveKeys {
		if p == k || strings.HasPrefix(p, k+".") || strings.HasPrefix(p, k+"[") {
			return true
		}
	}
	return false
}
