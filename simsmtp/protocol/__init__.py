"""Sans-IO protocol cores: SMTP server and client, POP3; replies, grammar and limits; TLS
over ``ssl.MemoryBIO``; SASL mechanisms. No sockets, threads or event loops here."""
