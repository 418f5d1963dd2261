"""One EMF line per request: metrics with different dimensions and the request's log record together."""

from __future__ import annotations

import threading

import pytest

from mx_webhooks.observability import NAMESPACE, emit, log_with_metrics, metrics_batch


def _metrics(document: dict) -> dict[str, tuple[list[str], list[float]]]:
    """metric name -> (its dimension names, its values), as CloudWatch reads the document."""
    found = {}
    for directive in document["_aws"]["CloudWatchMetrics"]:
        assert directive["Namespace"] == NAMESPACE
        for metric in directive["Metrics"]:
            (dimensions,) = directive["Dimensions"]
            assert all(name in document for name in dimensions)
            found[metric["Name"]] = (dimensions, document[metric["Name"]])
    return found


def test_a_batch_writes_one_document_with_a_directive_per_dimension_set(output):
    with metrics_batch():
        emit("WebhookReceived")
        emit("WebhookEnqueued", eventType="workorder.created")

    (document,) = output()
    assert _metrics(document) == {
        "WebhookReceived": (["service"], [1.0]),
        "WebhookEnqueued": (["service", "eventType"], [1.0]),
    }
    assert document["eventType"] == "workorder.created"


def test_clashing_dimension_values_go_to_separate_documents(output):
    with metrics_batch():
        emit("HandlerDuration", 3, handler="a")
        emit("HandlerDuration", 4, handler="b")
        emit("HandlerDuration", 5, handler="a")

    documents = output()
    by_handler = {d["handler"]: d["HandlerDuration"] for d in documents}
    assert by_handler == {"a": [3.0, 5.0], "b": [4.0]}


def test_the_log_record_rides_on_the_first_document(output):
    with metrics_batch():
        emit("WebhookReceived")
        log_with_metrics("webhook enqueued", event_id="evt_1", event_type="workorder.created")

    (document,) = output()
    assert document["message"] == "webhook enqueued"
    assert document["level"] == "INFO"
    assert document["event_id"] == "evt_1"
    assert document["service"] == "maintainx-webhooks"
    assert "WebhookReceived" in _metrics(document)
    assert not any("%(" in str(value) for value in document.values())


def test_a_record_without_metrics_is_still_written(output):
    with metrics_batch():
        log_with_metrics("only a record", n=1)

    (document,) = output()
    assert document["message"] == "only a record" and "_aws" not in document


def test_outside_a_batch_each_metric_is_written_at_once(output):
    emit("WebhookReceived")
    emit("WebhookReceived")

    assert len(output()) == 2


def test_batches_are_per_thread(output):
    def work(event_type: str) -> None:
        with metrics_batch():
            emit("EventProcessed", eventType=event_type)

    threads = [threading.Thread(target=work, args=(t,)) for t in ("workorder.created", "request.created")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(d["eventType"] for d in output()) == ["request.created", "workorder.created"]


@pytest.mark.parametrize(("name", "dims"), [("WebhookEnqueued", {}), ("WebhookReceived", {"eventType": "x"})])
def test_dimensions_must_match_the_catalog(name, dims):
    with pytest.raises(ValueError):
        emit(name, **dims)
