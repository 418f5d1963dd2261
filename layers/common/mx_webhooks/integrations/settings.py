"""The integrations' configuration (template parameters -> environment) and their secrets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, field_validator

DEFAULT_API_BASE_URL = "https://api.getmaintainx.com"
DEFAULT_APP_URL = "https://app.getmaintainx.com"


class SecretNotSet(Exception):
    """The secret exists but is still empty: fill it (README, "Built-in integrations")."""


class IntegrationsConfig(BaseModel):
    """Which built-in handlers run, and what they talk to. Validated at cold start."""

    model_config = {"populate_by_name": True, "extra": "ignore"}

    slack_enabled: bool = Field(default=False, alias="SLACK_NOTIFY_ENABLED")
    status_history_enabled: bool = Field(default=False, alias="STATUS_HISTORY_ENABLED")
    follow_up_enabled: bool = Field(default=False, alias="FOLLOW_UP_ENABLED")
    request_to_work_order_enabled: bool = Field(default=False, alias="REQUEST_TO_WORK_ORDER_ENABLED")
    event_bus_name: str = Field(default="", alias="EVENT_BUS_NAME")  # empty: no forwarding

    table_name: str = Field(default="", alias="INTEGRATIONS_TABLE_NAME")
    api_base_url: str = Field(default=DEFAULT_API_BASE_URL, alias="MAINTAINX_API_BASE_URL")
    app_url: str = Field(default=DEFAULT_APP_URL, alias="MAINTAINX_APP_URL")
    api_key_secret_arn: str = Field(default="", alias="MAINTAINX_API_KEY_SECRET_ARN")
    slack_secret_arn: str = Field(default="", alias="SLACK_WEBHOOK_SECRET_ARN")
    # Local/dev only, used when no secret ARN is set; the template never sets them.
    local_api_key: str = Field(default="", alias="LOCAL_MAINTAINX_API_KEY")
    local_slack_url: str = Field(default="", alias="LOCAL_SLACK_WEBHOOK_URL")
    secret_max_age: int = Field(default=300, ge=0, alias="INTEGRATION_SECRET_MAX_AGE_SECONDS")

    # "flag": the work order says requiresFollowUp (payload, API field or custom field
    # FOLLOW_UP_FIELD); "always": every completed work order; "priority:HIGH,MEDIUM":
    # the flag, or a completed work order of one of these priorities.
    follow_up_rule: str = Field(default="flag", alias="FOLLOW_UP_RULE")
    follow_up_field: str = Field(default="requiresFollowUp", alias="FOLLOW_UP_FIELD")

    http_budget_seconds: float = Field(default=12.0, gt=0, le=600, alias="HTTP_RETRY_BUDGET_SECONDS")
    http_max_attempts: int = Field(default=4, ge=1, le=10, alias="HTTP_MAX_ATTEMPTS")

    @field_validator("api_base_url", "app_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("follow_up_rule")
    @classmethod
    def _rule(cls, value: str) -> str:
        value = value.strip()
        if value in ("flag", "always") or (value.startswith("priority:") and value.split(":", 1)[1].strip()):
            return value
        raise ValueError('FOLLOW_UP_RULE must be "flag", "always" or "priority:<P1>,<P2>"')

    @property
    def follow_up_priorities(self) -> frozenset[str]:
        if not self.follow_up_rule.startswith("priority:"):
            return frozenset()
        return frozenset(p.strip().upper() for p in self.follow_up_rule.split(":", 1)[1].split(",") if p.strip())

    @property
    def needs_api(self) -> bool:
        return self.slack_enabled or self.follow_up_enabled or self.request_to_work_order_enabled

    @property
    def needs_table(self) -> bool:
        return self.status_history_enabled or self.follow_up_enabled or self.request_to_work_order_enabled

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IntegrationsConfig:
        config = cls.model_validate(dict(env))
        if config.needs_table and not config.table_name:
            raise ValueError("INTEGRATIONS_TABLE_NAME is required when status history or work-order creation is on")
        return config


class SecretValue:
    """One field of a Secrets Manager secret, through Powertools parameters (cached ``max_age`` s).

    The secret holds JSON (``{"apiKey": "..."}``) or the bare value. With no ARN, the
    local value is used (local stack, tests). The value is never logged or put in an
    error message.
    """

    def __init__(self, arn: str, field: str, *, local: str = "", max_age: int = 300, what: str = "secret") -> None:
        self._arn = arn
        self._field = field
        self._local = local
        self._max_age = max_age
        self._what = what

    def get(self) -> str:
        if not self._arn:
            if not self._local:
                raise SecretNotSet(f"the {self._what} is not configured (no secret ARN)")
            return self._local
        from aws_lambda_powertools.utilities.parameters import get_secret

        raw: Any = get_secret(self._arn, max_age=self._max_age)
        value = _field_of(raw, self._field)
        if not value:
            raise SecretNotSet(
                f"the {self._what} secret {self._arn} is empty: put the value in its {self._field!r} field"
            )
        return value


def _field_of(raw: Any, field: str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw.strip()
        raw = parsed
    if isinstance(raw, dict):
        value = raw.get(field)
        return value.strip() if isinstance(value, str) else ""
    return raw.strip() if isinstance(raw, str) else ""
