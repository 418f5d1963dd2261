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


def test_inside_invocation_metrics_records_are_lines_and_metrics_one_document_at_the_end(output):
    from mx_webhooks.observability import invocation_metrics

    with invocation_metrics():
        for n in range(10):
            with metrics_batch():
                emit("EventProcessed", eventType="workorder.created")
                emit("ProcessingLag", 1000.5 + n, eventType="workorder.created")
                log_with_metrics("event processed", correlation_id=f"evt_{n}")
        records = output()
        assert [r["correlation_id"] for r in records] == [f"evt_{n}" for n in range(10)]
        assert not any("_aws" in r for r in records)  # no metrics until the invocation ends
    (document,) = output()
    assert _metrics(document) == {
        "EventProcessed": (["service", "eventType"], [1] * 10),
        "ProcessingLag": (["service", "eventType"], [1000.5 + n for n in range(10)]),
    }


def test_a_metric_carries_at_most_100_values_per_document(output):
    from mx_webhooks.observability import EMF_MAX_VALUES, invocation_metrics

    with invocation_metrics():
        for _ in range(EMF_MAX_VALUES + 1):
            emit("EventProcessed", eventType="workorder.created")
    documents = output()
    assert [len(d["EventProcessed"]) for d in documents] == [EMF_MAX_VALUES, 1]


def test_worker_threads_joining_the_sink_report_into_the_same_document(output):
    from mx_webhooks.observability import current_sink, invocation_metrics, joined_sink

    with invocation_metrics():
        sink = current_sink()

        def work() -> None:
            with joined_sink(sink), metrics_batch():
                emit("EventProcessed", eventType="workorder.created")

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    (document,) = output()
    assert document["EventProcessed"] == [1, 1, 1, 1]


def test_info_lines_leave_out_service_and_request_id_warnings_keep_them(output):
    from mx_webhooks.observability import logger

    logger.append_keys(function_request_id="req-1", cold_start=False)
    try:
        logger.info("fine")
        logger.warning("not fine")
        logger.append_keys(cold_start=True)
        logger.info("first of its container")
    finally:
        logger.remove_keys(["function_request_id", "cold_start"])
    info, warning, first = output()
    assert "cold_start" not in info and first["cold_start"] is True  # written where true only
    assert "service" not in info and "function_request_id" not in info
    assert warning["service"] == "maintainx-webhooks" and warning["function_request_id"] == "req-1"
    assert info["timestamp"][10] == "T"  # RFC 3339, which Lambda's JSON log format parses
