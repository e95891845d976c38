// Command extract recovers the SIP torture test messages from the text of
// RFC 4475 or RFC 5118: both carry every message bit-exact in an appendix,
// as a base64-encoded, gzip-compressed tar archive between the lines
// "-- BEGIN MESSAGE ARCHIVE --" and "-- END MESSAGE ARCHIVE --".
//
//	go run ./test/torture/extract -rfc rfc4475.txt -out test/torture/rfc4475
//	go run ./test/torture/extract -rfc rfc5118.txt -out test/torture/rfc5118
//	go run ./test/torture/extract -rfc rfc4475.txt -out test/torture/rfc4475 -check
//
// The RFC text is the plain-text form from the RFC Editor
// (https://www.rfc-editor.org/rfc/rfc4475.txt, …/rfc5118.txt). The archive
// is decoded the way the RFCs' own Perl snippet does it: between the markers,
// every line that is a single whitespace-free token is base64 (page headers
// and footers have spaces in them and drop out). gzip's CRC-32 then proves
// the bytes arrived intact. Each regular file of the archive is written as
// <out>/<name>, with ".dat" appended when the archive's name has no
// extension (RFC 5118's files), byte for byte. -check compares instead of
// writing and exits 1 on any difference.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

const (
	beginMarker = "-- BEGIN MESSAGE ARCHIVE --"
	endMarker   = "-- END MESSAGE ARCHIVE --"
	// Bounds on what a torture archive can hold: both RFCs' archives are
	// well under these.
	maxArchive = 1 << 20
	maxFile    = 64 << 10
	maxFiles   = 200
)

func main() {
	rfc := flag.String("rfc", "", "path of the RFC's plain text (rfc4475.txt or rfc5118.txt)")
	out := flag.String("out", "", "directory to write the messages into")
	check := flag.Bool("check", false, "compare the messages with the files in -out instead of writing them")
	flag.Parse()
	if *rfc == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: extract -rfc RFC.txt -out DIR [-check]")
		os.Exit(2)
	}
	if err := run(*rfc, *out, *check); err != nil {
		fmt.Fprintln(os.Stderr, "extract:", err)
		os.Exit(1)
	}
}

func run(rfcPath, outDir string, check bool) error {
	text, err := os.ReadFile(rfcPath)
	if err != nil {
		return fmt.Errorf("read RFC text: %w", err)
	}
	fmt.Printf("%s: sha256 %x\n", rfcPath, sha256.Sum256(text))
	b64, err := archiveText(text)
	if err != nil {
		return fmt.Errorf("%s: %w", rfcPath, err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("%s: decode base64: %w", rfcPath, err)
	}
	files, err := untgz(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", rfcPath, err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)

	if !check {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", outDir, err)
		}
	}
	var differ []string
	for _, n := range names {
		p := filepath.Join(outDir, n)
		data := files[n]
		if check {
			have, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(have, data) {
				differ = append(differ, n)
			}
			continue
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Printf("%s\t%d bytes\tsha256 %x\n", p, len(data), sha256.Sum256(data))
	}
	if check {
		// A committed file the archive does not have is a difference too.
		entries, err := os.ReadDir(outDir)
		if err != nil {
			return fmt.Errorf("read %s: %w", outDir, err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".dat") {
				if _, ok := files[e.Name()]; !ok {
					differ = append(differ, e.Name()+" (not in the archive)")
				}
			}
		}
		if len(differ) > 0 {
			return fmt.Errorf("%d message(s) in %s differ from the RFC's archive: %s", len(differ), outDir, strings.Join(differ, ", "))
		}
		fmt.Printf("%s: all %d messages match the RFC's archive\n", outDir, len(names))
	}
	return nil
}

// archiveText returns the base64 text of the message archive. The RFCs quote
// the markers once inside their Perl snippet too; only lines that are the
// marker alone count.
func archiveText(text []byte) (string, error) {
	var b strings.Builder
	in, found := false, false
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == beginMarker:
			if found {
				return "", errors.New("more than one message archive")
			}
			in, found = true, true
		case line == endMarker && in:
			in = false
		case in:
			if f := strings.Fields(line); len(f) == 1 {
				b.WriteString(f[0])
				if b.Len() > 2*maxArchive {
					return "", errors.New("message archive too large")
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("scan: %w", err)
	}
	switch {
	case !found:
		return "", errors.New("no message archive (no line \"" + beginMarker + "\")")
	case in:
		return "", errors.New("message archive not terminated")
	}
	return b.String(), nil
}

// untgz reads the regular files of a gzip-compressed tar archive, keyed by
// their base name (".dat" added when it has no extension).
func untgz(raw []byte) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	tr := tar.NewReader(io.LimitReader(zr, maxArchive))
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("untar: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Base(h.Name)
		if name == "." || name == "/" || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("untar: unexpected file name %q", h.Name)
		}
		if path.Ext(name) == "" {
			name += ".dat"
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("untar: %s twice", name)
		}
		if len(files) >= maxFiles {
			return nil, errors.New("untar: too many files")
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxFile+1))
		if err != nil {
			return nil, fmt.Errorf("untar %s: %w", name, err)
		}
		if len(data) > maxFile {
			return nil, fmt.Errorf("untar %s: larger than %d bytes", name, maxFile)
		}
		files[name] = data
	}
	// Reading to the end makes gzip check its CRC-32 and length.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	if err := zr.Close(); err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("archive holds no files")
	}
	return files, nil
}
