// Command mkpcap writes a PCMU RTP stream (a tone) as a pcap file for SIPp's
// play_pcap_audio; test/load/run.sh uses it for the relayed-media mode.
//
//	go run ./test/load/mkpcap -o pcmu.pcap -seconds 30 -freq 1000
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/wagate/wagate/test/internal/pcmu"
)

func main() {
	out := flag.String("o", "pcmu.pcap", "output `file`")
	seconds := flag.Float64("seconds", 30, "stream length in seconds (20 ms packets)")
	freq := flag.Float64("freq", 1000, "tone frequency in Hz")
	flag.Parse()
	f, err := os.Create(*out)
	if err == nil {
		err = pcmu.WritePcap(f, *seconds, *freq)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkpcap:", err)
		os.Exit(1)
	}
}
