"""Each function's Environment in template.yaml against the config model that reads it, both ways.

No variable is set that nothing reads (a drifted name is a silent default in AWS), and
every variable the code reads is either set by the template or named here as a
code default on purpose (a tuning knob, or local/dev only), with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from mx_webhooks.admin import AdminConfig
from mx_webhooks.consumer import ConsumerConfig
from mx_webhooks.ingest import IngestConfig
from mx_webhooks.integrations.settings import IntegrationsConfig
from tests.conftest import load_template

POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
# Read by botocore itself: empty in AWS (ignored), set by `sam local --env-vars` to the local stack
SDK = {"AWS_ENDPOINT_URL"}

# Read by the code, deliberately not set by the template: their code default is the value.
CODE_DEFAULTS = {
    "IngestFunction": {
        "MAX_BODY_BYTES": "240,000: SQS's 256 KiB less room for attributes; only lower it",
        "SECRET_CACHE_SECONDS": "300 s, Powertools' own default for cached secrets",
    },
    "ConsumerFunction": {
        "CONSUMER_MAX_WORKERS": "10: one per record of the template's batch size",
        "HANDLER_TIME_MARGIN_MS": "3 s left: a handler is not started with less",
        "MAINTAINX_APP_URL": "links in Slack messages: the public MaintainX app",
        "LOCAL_MAINTAINX_API_KEY": "local/dev only, when no secret ARN is set",
        "LOCAL_SLACK_WEBHOOK_URL": "local/dev only, when no secret ARN is set",
        "INTEGRATION_SECRET_MAX_AGE_SECONDS": "300 s secret cache, as for ingest",
        "FOLLOW_UP_FIELD": "the MaintainX custom field the follow-up rule reads",
        "HTTP_RETRY_BUDGET_SECONDS": "12 s per handler call: well inside the 60 s timeout",
        "HTTP_MAX_ATTEMPTS": "4 attempts inside that budget",
        "BREAKER_FAILURE_THRESHOLD": "3 failed calls in a row open an integration's circuit breaker",
        "BREAKER_COOL_DOWN_SECONDS": "60 s first cool-down, doubled by each failed probe",
        "BREAKER_MAX_COOL_DOWN_SECONDS": "3600 s: one probe an hour in a long outage (under 10 calls in 2 h)",
        "DEFER_LIMIT_HOURS": "72 h: a deferred message is parked before the queue's 4-day retention",
    },
    "AdminFunction": {
        "STALLED_AFTER_SECONDS": "900 s: above the queue's 360 s visibility timeout",
    },
}


def _aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


READS: dict[str, set[str]] = {
    "IngestFunction": set(IngestConfig.ENV_NAMES.values()),
    "ConsumerFunction": _aliases(ConsumerConfig) | _aliases(IntegrationsConfig),
    "AdminFunction": _aliases(AdminConfig),
}


def _environment(template: dict[str, Any], function: str) -> set[str]:
    props = template["Resources"][function]["Properties"]
    return set(props.get("Environment", {}).get("Variables", {}))


@pytest.mark.parametrize("function", sorted(READS))
def test_every_variable_a_function_is_given_is_read_by_its_config(function):
    template = load_template()
    given = _environment(template, function) | set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert given - READS[function] - POWERTOOLS - SDK == set()


@pytest.mark.parametrize("function", sorted(READS))
def test_every_variable_a_config_reads_is_set_by_the_template_or_a_code_default_on_purpose(function):
    given = _environment(load_template(), function)
    assert READS[function] - given == set(CODE_DEFAULTS[function])


def test_the_listing_indexes_project_what_the_code_reads_from_them():
    """Attention serves listings without reading items: it projects every listed column.
    Recent projects only what never changes after an event's first write (so finishing an
    event does not rewrite its entry): exactly what the code filters and sorts on there."""
    from mx_webhooks.store import ATTENTION_INDEX, LIST_INDEXES, LISTED, RECENT_INDEX, RECENT_PROJECTED

    table = load_template()["Resources"]["EventsTable"]["Properties"]
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == set(LIST_INDEXES)

    def projected(name: str) -> set[str]:
        index = indexes[name]
        keys = {k["AttributeName"] for k in index["KeySchema"]} | {"eventId"}  # the table key is always projected
        return keys | set(index["Projection"].get("NonKeyAttributes", []))

    assert set(LISTED) - projected(ATTENTION_INDEX) == set()
    assert projected(RECENT_INDEX) == set(RECENT_PROJECTED)
