"""simsmtp: an educational simulator of Internet mail.

A world of domains, DNS records, mail servers and users boots on loopback and speaks real
SMTP, DNS, TLS, POP3 and IMAP; everything that happens is recorded in a trace that notebooks
step through. ``import simsmtp`` stays light: heavy parts load where they are used.
"""

__version__ = "0.1.0"
