"""The network layer: sockets, threads and event loops live only here."""
