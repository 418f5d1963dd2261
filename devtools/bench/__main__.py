"""``python -m devtools.bench`` (what ``make bench`` runs)."""

from devtools.bench.run import main

raise SystemExit(main())
