"""Pure analysis of captured bytes: transcripts, hexdumps, TLS records, DNS views, pcap."""
