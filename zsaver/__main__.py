"""``python -m zsaver``: the ``zsaver`` command, for environments without its script on PATH."""

from zsaver.cli import main

raise SystemExit(main())
