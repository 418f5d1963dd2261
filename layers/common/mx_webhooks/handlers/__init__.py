"""Handler modules. Importing one registers its handlers on ``mx_webhooks.registry``.

The consumer imports the modules named in ``HANDLER_MODULES`` (comma separated) at
cold start; a user's own module (in the layer or in ``functions/consumer/``) is
added there. A module that needs configuration defines ``configure(environ)``: it is
called with the function's environment once the module is imported, so no module
reads the environment at import (``mx_webhooks.handlers.integrations`` does this).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

DEFAULT_MODULES = "mx_webhooks.handlers.examples"


def load_handler_modules(spec: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Import each named module once and configure it; return their names. A bad name fails the cold start."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        module = importlib.import_module(name)
        configure = getattr(module, "configure", None)
        if callable(configure):
            configure(environ or {})
    return names
