"""``python -m ferryman`` runs the ``ferryman`` command."""

from ferryman.cli import main

raise SystemExit(main())
