"""The dashboard, the alarms and the code agree on every metric; the admin API is IAM-only.

The custom metrics are defined once, in ``mx_webhooks.observability.METRIC_CATALOG``
(name -> dimensions besides ``service``). These tests tie the three places that use
them together: what the code emits (read from the source and run), what the
dashboard shows, and what the alarms watch. The one other source of custom metrics
is the template's own metric filters (``AWS::Logs::MetricFilter``, e.g. throttled
requests counted from the API access log): those are tied to the dashboard and the
alarms the same way, with the filter's dimensions.
"""

from __future__ import annotations

import ast
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from mx_webhooks import observability
from tests.conftest import ROOT, load_template

PACKAGE = ROOT / "layers" / "common" / "mx_webhooks"
SEARCH = re.compile(r"""^SEARCH\('\{([^}]*)\} MetricName="([^"]+)"', '([^']+)', \d+\)$""")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def globals_env(template) -> dict[str, str]:
    return template["Globals"]["Function"]["Environment"]["Variables"]


@pytest.fixture(scope="module")
def dashboard(template) -> dict[str, Any]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = re.sub(r"\$\{([\w.:]+)\}", r"@\1@", body)
    body = re.sub(r":\s*@[\w.:]+@", ": 0", body)  # a bare ${Parameter} number, e.g. an annotation
    return json.loads(body)


@pytest.fixture(scope="module")
def filter_metrics(template, globals_env) -> dict[str, tuple[str, ...]]:
    """Metrics the template's log metric filters produce in the project namespace: name -> dimension names."""
    namespace = globals_env["POWERTOOLS_METRICS_NAMESPACE"]
    found: dict[str, tuple[str, ...]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Logs::MetricFilter":
            continue
        for transformation in resource["Properties"]["MetricTransformations"]:
            assert transformation["MetricNamespace"] == namespace, transformation
            dims = tuple(sorted(d["Key"] for d in transformation.get("Dimensions", [])))
            found[transformation["MetricName"]] = dims
    return found


def _metric_rows(dashboard: dict[str, Any]) -> list[list[Any]]:
    return [row for w in dashboard["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]]


def dashboard_custom_metrics(dashboard: dict[str, Any], namespace: str) -> dict[str, set[tuple[str, ...]]]:
    """Custom metric name -> the dimension-name sets the dashboard reads it with.

    A row is either ``[namespace, name, dim, value, ..., {options}]`` or a SEARCH
    expression over an exact schema ``{namespace,dim,...} MetricName="name"``.
    """
    found: dict[str, set[tuple[str, ...]]] = {}
    for row in _metric_rows(dashboard):
        if isinstance(row[0], dict) and "expression" in row[0]:
            match = SEARCH.match(row[0]["expression"])
            assert match, f"unexpected expression {row[0]['expression']!r}: use an exact-schema SEARCH"
            schema = [part.strip() for part in match[1].split(",")]
            assert schema[0] == namespace, f"SEARCH in namespace {schema[0]}, the code emits to {namespace}"
            found.setdefault(match[2], set()).add(tuple(sorted(schema[1:])))
        elif row[0] == namespace:
            parts = [p for p in row[2:] if not isinstance(p, dict)]
            found.setdefault(row[1], set()).add(tuple(sorted(parts[0::2])))
        else:
            assert row[0].startswith("AWS/"), f"metric {row[1]} in unknown namespace {row[0]}"
    return found


def test_every_custom_metric_on_the_dashboard_is_emitted_with_those_dimensions_and_vice_versa(
    dashboard, globals_env, filter_metrics
):
    # Given the namespace every function emits to (template Globals)
    namespace = globals_env["POWERTOOLS_METRICS_NAMESPACE"]
    # (a metric filter never reuses a name the code emits: the two would mix in one metric)
    assert set(filter_metrics) & set(observability.METRIC_CATALOG) == set()

    # When the dashboard's custom metrics are read
    shown = dashboard_custom_metrics(dashboard, namespace)

    # Then each is in the catalog, read with exactly the catalog's dimensions plus service,
    # or comes from a metric filter, read with exactly the filter's dimensions
    for name, dimension_sets in shown.items():
        if name in filter_metrics:
            assert dimension_sets == {filter_metrics[name]}, f"{name}: {dimension_sets}, filter {filter_metrics[name]}"
            continue
        assert name in observability.METRIC_CATALOG, f"the dashboard shows {name}, which no code or filter emits"
        expected = tuple(sorted(("service", *observability.METRIC_CATALOG[name])))
        assert dimension_sets == {expected}, f"{name}: dashboard dimensions {dimension_sets}, emitted {expected}"
    # and every catalogued or filtered metric has a place on the dashboard
    assert set(observability.METRIC_CATALOG) - set(shown) == set()
    assert set(filter_metrics) - set(shown) == set()


def test_explicit_dashboard_rows_use_the_service_name_the_functions_log_with(dashboard, globals_env):
    namespace = globals_env["POWERTOOLS_METRICS_NAMESPACE"]
    rows = [row for row in _metric_rows(dashboard) if row[0] == namespace and row[1] in observability.METRIC_CATALOG]
    services = {row[3] for row in rows}
    assert services == {globals_env["POWERTOOLS_SERVICE_NAME"]}


def test_alarms_watch_only_metrics_that_exist_and_notify_the_alerts_topic(template, globals_env, filter_metrics):
    namespace = globals_env["POWERTOOLS_METRICS_NAMESPACE"]
    alarms = {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    # The four alarms the operators rely on exist, each on the metric it names
    watched = {}
    for logical_id, props in alarms.items():
        metrics = (
            [props]
            if "MetricName" in props
            else [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
        )
        watched[logical_id] = {(m["Namespace"], m["MetricName"]) for m in metrics}
        # a custom metric in an alarm must be emitted (by the code or a metric filter) with exactly those dimensions
        for metric in metrics:
            if metric["Namespace"] == namespace:
                dims = tuple(sorted(d["Name"] for d in metric.get("Dimensions", [])))
                if metric["MetricName"] in filter_metrics:
                    assert dims == filter_metrics[metric["MetricName"]], (logical_id, dims)
                else:
                    assert dims == tuple(sorted(("service", *observability.METRIC_CATALOG[metric["MetricName"]])))
        assert props["AlarmActions"] == [{"Ref": "AlertsTopic"}], f"{logical_id} does not notify AlertsTopic"
    assert watched["DLQNotEmptyAlarm"] == {("AWS/SQS", "ApproximateNumberOfMessagesVisible")}
    assert watched["QueueAgeAlarm"] == {("AWS/SQS", "ApproximateAgeOfOldestMessage")}
    assert watched["ConsumerErrorRateAlarm"] == {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Invocations")}
    assert watched["Ingest5xxAlarm"] == {("AWS/ApiGateway", "5xx")}
    assert alarms["Ingest5xxAlarm"]["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "WebhookApi"}}]
    assert watched["WebhookThrottledAlarm"] == {(namespace, "WebhookThrottled")}
    assert alarms["WebhookThrottledAlarm"]["Threshold"] == {"Ref": "ThrottledRequestsAlarmThreshold"}


def test_the_dashboard_shows_the_api_queue_dlq_and_consumer_metrics(dashboard):
    rows = {
        (row[0], row[1], tuple(p for p in row[2:4] if isinstance(p, str)))
        for row in _metric_rows(dashboard)
        if isinstance(row[0], str)
    }
    api = ("ApiId", "@WebhookApi@")
    queue = ("QueueName", "@EventsQueue.QueueName@")
    consumer = ("FunctionName", "@ConsumerFunction@")
    required = {
        ("AWS/ApiGateway", "Count", api),
        ("AWS/ApiGateway", "4xx", api),
        ("AWS/ApiGateway", "5xx", api),
        ("AWS/ApiGateway", "Latency", api),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", queue),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", ("QueueName", "@EventsDLQ.QueueName@")),
        ("AWS/Lambda", "Errors", consumer),
        ("AWS/Lambda", "Duration", consumer),
        ("AWS/Lambda", "Throttles", consumer),
        ("AWS/Lambda", "ConcurrentExecutions", consumer),
        ("MaintainXWebhooks", "WebhookThrottled", ()),
    }
    assert required - rows == set()


def _access_log_line(log_format: str, **values: str) -> dict[str, Any]:
    """One access log line as API Gateway writes it: each ``$context.x`` replaced (``-`` when not given)."""
    line = re.sub(r"\$context\.([\w.]+)", lambda m: values.get(m[1], "-"), log_format)
    return json.loads(line)


def _filter_matches(pattern: str, line: dict[str, Any]) -> bool:
    """CloudWatch Logs' JSON filter pattern, the subset the template uses: ``{ ($.f = "v") && ... }``.

    ``*`` in a value matches any text, as in CloudWatch; a field that is absent never matches.
    Anything else in the pattern fails the test, so a new pattern gets this checker extended.
    """
    body = re.fullmatch(r"\{\s*(.*?)\s*\}", pattern.strip())
    assert body, f"not a JSON filter pattern: {pattern!r}"
    for term in body[1].split("&&"):
        found = re.fullmatch(r'\s*\(?\s*\$\.(\w+)\s*=\s*"([^"]*)"\s*\)?\s*', term)
        assert found, f"extend _filter_matches for {term!r}"
        field, wanted = found[1], found[2]
        if field not in line:
            return False
        if not re.fullmatch(".*".join(re.escape(part) for part in wanted.split("*")), str(line[field])):
            return False
    return True


def test_throttled_requests_are_counted_from_the_webhook_apis_access_log_only(template):
    # Given the metric filter on the API access log, and the access log format of each API
    resources = template["Resources"]
    (metric_filter,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Logs::MetricFilter"]
    formats = {api: resources[api]["Properties"]["AccessLogSettings"]["Format"] for api in ("WebhookApi", "AdminApi")}

    # Then it reads the log group the webhook API writes its access log to
    assert metric_filter["LogGroupName"] == {"Ref": "ApiAccessLogs"}
    assert resources["WebhookApi"]["Properties"]["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiAccessLogs", "Arn"]
    }
    # and counts one per webhook request answered 429 (0 in a minute with traffic but none throttled)
    (transformation,) = metric_filter["MetricTransformations"]
    assert (transformation["MetricName"], transformation["MetricValue"]) == ("WebhookThrottled", "1")
    assert transformation["DefaultValue"] == 0 and transformation["Unit"] == "Count"

    # When lines are written as each API writes them (both share the log group)
    pattern = metric_filter["FilterPattern"]
    webhook_routes = ("POST /webhooks/maintainx", "POST /webhooks/maintainx/{source}")
    for route in webhook_routes:
        # Then a throttled webhook request is counted, every other webhook answer is not
        assert _filter_matches(pattern, _access_log_line(formats["WebhookApi"], status="429", routeKey=route))
        for status in ("202", "400", "401", "413", "500", "503"):
            assert not _filter_matches(pattern, _access_log_line(formats["WebhookApi"], status=status, routeKey=route))
    # and a throttled admin request is not (the admin API has its own, lower, throttle)
    admin_line = _access_log_line(formats["AdminApi"], status="429", routeKey="GET /admin/webhooks")
    assert not _filter_matches(pattern, admin_line)


def _emit_calls() -> list[tuple[Path, str, tuple[str, ...]]]:
    """Every ``emit("Name", ..., dim=...)`` in the shared package: (file, name, dimension names)."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "emit" and node.args:
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{path}: emit() with a computed name cannot be checked"
                dims = tuple(sorted(k.arg for k in node.keywords if k.arg not in ("value", "unit")))
                calls.append((path, first.value, dims))
    return calls


def test_the_code_emits_every_catalogued_metric_with_its_dimensions():
    # Given every emit() call in the code
    calls = _emit_calls()

    # Then each names a catalogued metric with exactly its dimensions
    for path, name, dims in calls:
        assert name in observability.METRIC_CATALOG, f"{path.name} emits {name}, missing from METRIC_CATALOG"
        assert dims == tuple(sorted(observability.METRIC_CATALOG[name])), f"{path.name}: {name} with {dims}"
    # and no catalogued metric is a dead entry that nothing emits
    assert set(observability.METRIC_CATALOG) - {name for _, name, _ in calls} == set()


def test_emit_writes_emf_in_the_template_namespace_with_service_and_the_catalog_dimensions(globals_env):
    for name, dims in observability.METRIC_CATALOG.items():
        # When a metric is emitted
        out = io.StringIO()
        with redirect_stdout(out):
            observability.emit(name, 2, **dict.fromkeys(dims, "x"))

        # Then the EMF document is in the namespace and dimension set the dashboard reads
        document = json.loads(out.getvalue())
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == globals_env["POWERTOOLS_METRICS_NAMESPACE"]
        assert directive["Metrics"][0]["Name"] == name
        assert sorted(directive["Dimensions"][0]) == sorted(("service", *dims))
        assert document["service"] == globals_env["POWERTOOLS_SERVICE_NAME"] and document[name] in (2.0, [2.0])


def test_every_admin_route_requires_iam_and_the_webhook_routes_stay_public(template):
    # Given the template as CloudFormation (SAM translated)
    from samtranslator.translator.transform import transform

    for resource in template["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key.zip"
    resources = transform(template, {}, _NoManagedPolicies())["Resources"]

    # Then every admin route is SigV4 (AWS_IAM), all nine of them, on an API with no open route
    admin_paths = resources["AdminApi"]["Properties"]["Body"]["paths"]
    routes = {
        (method.upper(), path): op.get("security") for path, ops in admin_paths.items() for method, op in ops.items()
    }
    assert set(routes) == {
        ("GET", "/admin/webhooks"),
        ("GET", "/admin/webhooks/{id}"),
        ("GET", "/admin/entities/{kind}/{id}/events"),
        ("POST", "/admin/webhooks/{id}/retry"),
        ("POST", "/admin/webhooks/retry"),
        ("GET", "/admin/dlq"),
        ("POST", "/admin/dlq/redrive"),
        ("GET", "/admin/stats"),
        ("GET", "/admin/integrations"),
    }
    assert all(security == [{"AWS_IAM": []}] for security in routes.values()), routes
    # and MaintainX's routes carry no IAM auth (they are verified by signature instead)
    webhook_paths = resources["WebhookApi"]["Properties"]["Body"]["paths"]
    assert all("admin" not in path for path in webhook_paths)


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def test_ingest_cold_start_loads_no_tracing_sdk_while_admin_traces(tmp_path):
    # Given fresh interpreters importing each entry module as Lambda would
    import subprocess
    import sys

    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(str(ROOT / p) for p in ("layers/common", "functions/ingest", "functions/admin")),
        "AWS_DEFAULT_REGION": "us-east-1",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/events",
        "LOCAL_WEBHOOK_SECRETS": '{"default": ["x"]}',
        "TABLE_NAME": "events",
        "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
        "POWERTOOLS_TRACE_DISABLED": "false",
    }
    probe = "import sys, {m}; print('aws_xray_sdk.core' in sys.modules)"

    def loads_xray(module: str) -> bool:
        result = subprocess.run(
            [sys.executable, "-c", probe.format(m=module)], env=env, capture_output=True, text=True, check=True
        )
        return result.stdout.strip() == "True"

    # Then ingest stays free of the X-Ray SDK, and the admin function does load it
    assert loads_xray("ingest_handler") is False
    assert loads_xray("admin_handler") is True


@pytest.mark.parametrize("function", ["IngestFunction", "ConsumerFunction"])
def test_delivery_path_functions_log_json_without_platform_lines_and_keep_info(template, function):
    """No START/END/REPORT per invocation (SystemLogLevel WARN), and an application level
    that never drops INFO: EMF lines carry no "level", which Lambda counts as INFO."""
    config = template["Resources"][function]["Properties"]["LoggingConfig"]
    assert config["LogFormat"] == "JSON" and config["SystemLogLevel"] == "WARN"
    condition, when_true, otherwise = config["ApplicationLogLevel"]["Fn::If"]
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": "LogLevel"}, "DEBUG"]}
    assert (when_true, otherwise) == ("DEBUG", "INFO")


def test_the_cost_model_reads_platform_and_access_log_bytes_from_the_template():
    from devtools.bench import cost

    assert cost.platform_log_bytes("IngestFunction") == cost.platform_log_bytes("ConsumerFunction") == 0
    assert cost.platform_log_bytes("AdminFunction") > 0  # text format: START/END/REPORT
    fmt = load_template()["Resources"]["WebhookApi"]["Properties"]["AccessLogSettings"]["Format"]
    assert cost.access_log_bytes() == len(_access_log_line_text(fmt)) + cost.LOG_EVENT_OVERHEAD_BYTES


def _access_log_line_text(log_format: str) -> str:
    from devtools.bench.cost import ACCESS_LOG_SAMPLE

    line = re.sub(r"\$context\.([\w.]+)", lambda m: ACCESS_LOG_SAMPLE[f"$context.{m[1]}"], log_format)
    json.loads(line)  # still a JSON object
    return line
