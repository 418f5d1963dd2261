"""Handler modules. Importing one registers its handlers on ``mx_webhooks.registry``.

The consumer imports the modules named in ``HANDLER_MODULES`` (comma separated) at
cold start; a user's own module (in the layer or in ``functions/consumer/``) is
added there.
"""

from __future__ import annotations

import importlib

DEFAULT_MODULES = "mx_webhooks.handlers.examples"


def load_handler_modules(spec: str) -> list[str]:
    """Import each named module once; return their names. A bad name fails the cold start."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        importlib.import_module(name)
    return names
