"""A fake Slack incoming webhook: accepts posts on one secret path, answers like Slack."""

from __future__ import annotations

from typing import Any

from tests.fakes.server import Answer, Call, FakeServer

HOOK_PATH = "/services/T0FAKE/B0FAKE/fakeSecretToken"


class FakeSlack(FakeServer):
    @property
    def webhook_url(self) -> str:
        return self.url + HOOK_PATH

    def route(self, call: Call) -> Answer:
        if call.method != "POST" or call.path != HOOK_PATH:
            return Answer(404, b"no_service")
        if not call.body or call.headers.get("content-type", "").split(";")[0] != "application/json":
            return Answer(400, b"invalid_payload")
        return Answer(200, b"ok", {"Content-Type": "text/html"})

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Bodies of the posts Slack accepted (scripted failures are not messages)."""
        return [c.json() for c in self.calls_to("POST", HOOK_PATH)]
