"""``python -m inversionview``: the command line (as ``torchrun -m inversionview`` starts it)."""

from inversionview.cli import main

raise SystemExit(main())
