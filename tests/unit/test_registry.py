"""The handler registry: subscriptions, the wildcard, and the order handlers run in."""

from __future__ import annotations

import pytest

from mx_webhooks.registry import Registry


def test_handlers_for_a_type_include_the_wildcard_and_skip_others():
    registry = Registry()
    registry.on("workorder.created")(lambda e: None)  # named test_registry.<lambda>

    @registry.on("*")
    def audit(event):
        return None

    @registry.on("request.created")
    def other(event):
        return None

    assert [h.name for h in registry.handlers_for(["workorder.created"])] == [
        "test_registry.<lambda>",
        "test_registry.audit",
    ]
    assert [h.name for h in registry.handlers_for(["asset.updated"])] == ["test_registry.audit"]


def test_idempotent_handlers_run_first_each_group_in_registration_order():
    registry = Registry()
    for name, idempotent in [("create_wo", False), ("log", True), ("slack", False), ("metrics", True)]:
        registry.on("workorder.completed", name=name, idempotent=idempotent)(lambda e: None)

    order = [h.name for h in registry.handlers_for(["workorder.completed"])]

    assert order == ["log", "metrics", "create_wo", "slack"]


def test_a_handler_name_is_registered_once():
    registry = Registry()
    registry.on("workorder.created", name="notify")(lambda e: None)

    with pytest.raises(ValueError, match="already registered"):
        registry.on("workorder.updated", name="notify")(lambda e: None)


def test_on_needs_a_type():
    with pytest.raises(ValueError):
        Registry().on()
