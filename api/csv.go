package api

import (
	"encoding/csv"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wagate/wagate/events"
)

// A CDR's CSV columns are its JSON fields, nested ones joined with dots
// ("a.endpoint", "media.a_to_b.packets"), in the order of the Go type, so
// that CSV and JSON cannot drift apart.

// csvColumn is one leaf field of events.CDR.
type csvColumn struct {
	name  string
	index []int
}

var (
	csvOnce    sync.Once
	csvColumns []csvColumn
)

var timeType = reflect.TypeFor[time.Time]()

func cdrColumns() []csvColumn {
	csvOnce.Do(func() { csvColumns = columnsOf(reflect.TypeFor[events.CDR](), "", nil) })
	return csvColumns
}

func columnsOf(t reflect.Type, prefix string, index []int) []csvColumn {
	var cols []csvColumn
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || f.Type.Kind() == reflect.Slice {
			// Lists (a CDR's attempts) do not fit a cell: JSON only.
			continue
		}
		if name == "" {
			name = f.Name
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct && f.Type != timeType {
			cols = append(cols, columnsOf(f.Type, prefix+name+".", idx)...)
			continue
		}
		cols = append(cols, csvColumn{name: prefix + name, index: idx})
	}
	return cols
}

// utf8BOM is the UTF-8 encoding of U+FEFF, the byte-order mark.
const utf8BOM = "\xef\xbb\xbf"

// writeCDRsCSV writes a header row and one row per CDR, after a UTF-8
// byte-order mark when bom is set.
func writeCDRsCSV(w io.Writer, cdrs []events.CDR, bom bool) error {
	if bom {
		if _, err := io.WriteString(w, utf8BOM); err != nil {
			return err
		}
	}
	cols := cdrColumns()
	cw := csv.NewWriter(w)
	row := make([]string, len(cols))
	for i, c := range cols {
		row[i] = c.name
	}
	if err := cw.Write(row); err != nil {
		return err
	}
	for i := range cdrs {
		v := reflect.ValueOf(&cdrs[i]).Elem()
		for j, c := range cols {
			row[j] = csvCell(v.FieldByIndex(c.index))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvCell(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		// An optional value (meta_duration_s): empty when absent, as
		// JSON leaves it out.
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		return defuse(v.String())
	case reflect.Int, reflect.Int64, reflect.Int32:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float64, reflect.Float32:
		return strconv.FormatFloat(v.Float(), 'f', -1, 64)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	return ""
}

// defuse keeps a spreadsheet from running a text cell as a formula (CSV
// injection: a dialer's X-WABA-Callback-Data could be "=HYPERLINK(…)"): a
// cell starting with = @ tab or CR, or with + or - and not a number, gets a
// leading apostrophe. Phone numbers ("+15550100001") are left alone.
func defuse(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '@', '\t', '\r':
		return "'" + s
	case '+', '-':
		if !plainNumber(s[1:]) {
			return "'" + s
		}
	}
	return s
}

// plainNumber reports whether s is digits with at most one '.': what
// every spreadsheet reads as a number. (strconv.ParseFloat also takes
// hex floats, digit separators, exponents and Inf, which a spreadsheet
// reads as a formula.)
func plainNumber(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
