"""Slack incoming-webhook messages.

The webhook URL is a credential: it comes from Secrets Manager, is never logged and
never appears in an error (``http`` labels calls instead of naming URLs). Slack
answers 200 ``ok``; 400/403/404/410 (bad payload, revoked hook, archived channel)
cannot be fixed by a retry and park the event; 429/5xx are retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mx_webhooks.integrations.http import JsonHttp

PRIORITY_EMOJI = {"HIGH": ":red_circle:", "MEDIUM": ":large_orange_circle:", "LOW": ":large_blue_circle:"}


def escape(text: str) -> str:
    """Slack mrkdwn control characters, so a title cannot inject links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class WorkOrderSummary:
    """What a person needs to see about a new work order."""

    id: int | str
    title: str
    url: str
    priority: str | None = None
    asset: str | None = None
    location: str | None = None
    status: str | None = None


def new_work_order_message(wo: WorkOrderSummary) -> dict[str, Any]:
    """An incoming-webhook body: Block Kit blocks, and ``text`` for notifications and old clients."""
    title = escape(wo.title or "(untitled)")
    priority = (wo.priority or "NONE").upper()
    asset = escape(wo.asset) if wo.asset else "—"
    location = escape(wo.location) if wo.location else "—"
    text = f"New work order #{wo.id}: {title} (priority {priority})"
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*New work order <{wo.url}|#{wo.id}>*\n{title}"},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Priority*\n{PRIORITY_EMOJI.get(priority, '')} {priority}".strip()},
                    {"type": "mrkdwn", "text": f"*Asset*\n{asset}"},
                    {"type": "mrkdwn", "text": f"*Location*\n{location}"},
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open in MaintainX"}, "url": wo.url}
                ],
            },
        ],
    }


class SlackNotifier:
    def __init__(self, http: JsonHttp, webhook_url: Callable[[], str]) -> None:
        self._http = http
        self._webhook_url = webhook_url

    def post(self, message: dict[str, Any]) -> None:
        # Resent on 5xx and dropped connections: a rare duplicate message is better
        # than a lost one (Slack has no idempotency key for incoming webhooks).
        self._http.request("POST", self._webhook_url(), label="incoming webhook", json_body=message, idempotent=True)
