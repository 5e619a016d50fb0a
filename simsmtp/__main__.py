"""``python -m simsmtp``: see :mod:`simsmtp.cli`."""

from simsmtp.cli import main

raise SystemExit(main())
