"""Signing secrets per source, from Secrets Manager with caching.

The secret's value is JSON mapping each source (one MaintainX subscription each) to
its secrets, newest first, so a rotation is "add the new one in front, drop the old
one later"::

    {"default": ["whsec_new", "whsec_old"], "work-requests": ["whsec_wr"]}

A bare string is accepted for a source with one secret. Fetching goes through
Powertools parameters (cached for ``max_age`` seconds per container). For local use
only, ``LOCAL_WEBHOOK_SECRETS`` holds the same JSON in the environment when no
secret ARN is configured; the template always sets the ARN, never the plain value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class SecretsUnavailable(Exception):
    """The secret store could not be read (a 503: MaintainX will retry)."""


def parse_secret_map(raw: Any) -> dict[str, tuple[str, ...]]:
    """Validate and normalise the secret JSON to ``{source: (secret, ...)}``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise SecretsUnavailable("the webhook secret is not JSON") from exc
    if not isinstance(raw, Mapping):
        raise SecretsUnavailable("the webhook secret must be a JSON object of source -> secrets")
    result: dict[str, tuple[str, ...]] = {}
    for source, value in raw.items():
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SecretsUnavailable(f"secrets of source {source!r} must be a string or a list of strings")
        result[str(source)] = tuple(v for v in values if v)
    return result


class SecretProvider:
    """Source -> secrets, read once per ``max_age`` seconds."""

    def __init__(self, secret_arn: str, local_json: str = "", max_age: int = 300) -> None:
        self._arn = secret_arn
        self._local = parse_secret_map(local_json) if (local_json and not secret_arn) else None
        self._max_age = max_age

    def secrets_for(self, source: str) -> tuple[str, ...] | None:
        """The source's secrets, or None when the source is not configured at all."""
        return self._all().get(source)

    def _all(self) -> dict[str, tuple[str, ...]]:
        if self._local is not None:
            return self._local
        if not self._arn:
            return {}
        # Imported here: only a request that needs the secret pays for it.
        from aws_lambda_powertools.utilities.parameters import get_secret
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            raw = get_secret(self._arn, max_age=self._max_age)
        except GetParameterError as exc:
            raise SecretsUnavailable(str(exc)) from exc
        return parse_secret_map(raw)
