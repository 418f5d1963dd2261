"""template.yaml, translated offline to CloudFormation and created as a stack in moto.

The wiring a user relies on: the queue's redrive to the DLQ, the consumer's event
source mapping, the DLQ alarm notifying the alerts topic, encryption at rest, and
the outputs. moto skips CloudWatch alarms and ApiGatewayV2 resources when it creates
a stack, so those are checked on the translated template itself.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from typing import Any

import boto3
import pytest

from devtools.local_stack import for_moto
from devtools.local_stack.template import translate
from tests.conftest import REGION, ROOT

BUCKET = "template-test-code"


@pytest.fixture(scope="module")
def translated() -> Any:
    return translate(ROOT / "template.yaml", {}, BUCKET)


@pytest.fixture(scope="module")
def cfn(translated: Any) -> dict[str, Any]:
    return translated.cfn


def resources_of(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == kind}


def props(cfn: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return cfn["Resources"][logical_id]["Properties"]


def _zip(folder: Any) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


@pytest.fixture
def moto_stack(aws: None, translated: Any) -> dict[str, Any]:
    """The translated template created as a CloudFormation stack in moto."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    for asset in translated.assets:
        s3.put_object(Bucket=BUCKET, Key=asset.key, Body=_zip(asset.path))
    template = copy.deepcopy(translated.cfn)
    for resource in resources_of(template, "AWS::Lambda::EventSourceMapping").values():
        resource["Properties"]["Enabled"] = False  # enabled, moto would try to run the function in Docker
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="maintainx-webhooks-test",
        TemplateBody=json.dumps(for_moto(template)),  # minus the alarms and API moto cannot create
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    listed = cloudformation.list_stack_resources(StackName="maintainx-webhooks-test")["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in listed}
    stack = cloudformation.describe_stacks(StackName="maintainx-webhooks-test")["Stacks"][0]
    return {"physical": physical, "status": stack["StackStatus"]}


def test_the_stack_is_created_in_moto(moto_stack):
    assert moto_stack["status"] == "CREATE_COMPLETE"
    for logical_id in ("EventsQueue", "EventsDLQ", "EventsTable", "AlertsTopic", "IngestFunction", "ConsumerFunction"):
        assert logical_id in moto_stack["physical"], logical_id


def test_the_queue_redrives_to_the_dlq_after_max_receive_count(moto_stack):
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = moto_stack["physical"]["EventsQueue"]
    dlq_url = moto_stack["physical"]["EventsDLQ"]

    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == 140  # the MaxReceiveCount parameter's default: above RetryAttempts


def test_the_queue_visibility_is_at_least_six_times_the_consumer_timeout(cfn):
    consumer_timeout = props(cfn, "ConsumerFunction")["Timeout"]

    assert props(cfn, "EventsQueue")["VisibilityTimeout"] >= 6 * consumer_timeout


def test_the_consumer_event_source_mapping_reports_partial_batch_failures(moto_stack, cfn):
    (mapping,) = resources_of(cfn, "AWS::Lambda::EventSourceMapping").values()
    settings = mapping["Properties"]
    assert settings["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert settings["BatchSize"] == {"Ref": "ConsumerBatchSize"}
    assert settings["MaximumBatchingWindowInSeconds"] == {"Ref": "ConsumerBatchingWindowSeconds"}
    assert settings["FunctionName"] == {"Ref": "ConsumerFunction"}
    assert settings["EventSourceArn"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}

    # and moto created it with the parameter defaults resolved
    (created,) = boto3.client("lambda", region_name=REGION).list_event_source_mappings()["EventSourceMappings"]
    assert created["BatchSize"] == 10
    assert created["MaximumBatchingWindowInSeconds"] == 1
    assert created["FunctionArn"].endswith(moto_stack["physical"]["ConsumerFunction"])


def test_the_dlq_alarm_notifies_the_alerts_topic(cfn):
    alarm = props(cfn, "DLQNotEmptyAlarm")

    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["EventsDLQ", "QueueName"]}}]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    assert {"Ref": "AlertsTopic"} in alarm["AlarmActions"]


def test_every_alarm_notifies_the_alerts_topic(cfn):
    alarms = resources_of(cfn, "AWS::CloudWatch::Alarm")

    assert alarms
    for name, alarm in alarms.items():
        assert {"Ref": "AlertsTopic"} in alarm["Properties"]["AlarmActions"], name


def test_data_is_encrypted_at_rest(cfn):
    assert props(cfn, "EventsQueue").get("SqsManagedSseEnabled") or props(cfn, "EventsQueue").get("KmsMasterKeyId")
    assert props(cfn, "EventsDLQ").get("SqsManagedSseEnabled") or props(cfn, "EventsDLQ").get("KmsMasterKeyId")
    assert props(cfn, "EventsTable")["SSESpecification"]["SSEEnabled"] is True
    assert props(cfn, "AlertsTopic")["KmsMasterKeyId"]


def test_the_events_table_is_on_demand_with_pitr_and_ttl(cfn):
    table = props(cfn, "EventsTable")

    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert {"AttributeName": "eventId", "KeyType": "HASH"} in table["KeySchema"]


def test_functions_run_python313_with_the_shared_layer(cfn, translated):
    functions = resources_of(cfn, "AWS::Lambda::Function")

    assert functions
    for name, function in functions.items():
        assert function["Properties"]["Runtime"] == "python3.13", name
        assert len(function["Properties"]["Layers"]) == 1, name
    layer = translated.sam["Resources"]["SharedLayer"]
    # built by layers/common/Makefile (pip for Lambda's platform, then bytecode): tests/template/test_build.py
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["ContentUri"].rstrip("/") == "layers/common"


def test_the_webhook_routes_are_post_with_and_without_a_source(translated):
    events = translated.sam["Resources"]["IngestFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values() if e["Type"] == "HttpApi"}

    assert routes == {("POST", "/webhooks/maintainx"), ("POST", "/webhooks/maintainx/{source}")}


def test_the_signing_secret_lives_in_secrets_manager_not_in_plain_environment(cfn):
    ingest_env = props(cfn, "IngestFunction")["Environment"]["Variables"]

    assert ingest_env["WEBHOOK_SECRET_ARN"] == {"Ref": "WebhookSecret"}
    assert ingest_env.get("LOCAL_WEBHOOK_SECRETS", "") == ""  # declared empty for sam local only
    assert cfn["Resources"]["WebhookSecret"]["Type"] == "AWS::SecretsManager::Secret"
    for name, spec in cfn["Parameters"].items():
        assert "secret" not in name.lower() or spec.get("NoEcho"), f"parameter {name} would show a secret in plain text"


def test_the_ingest_function_may_only_send_to_the_queue_and_read_its_secret(cfn):
    role = props(cfn, "IngestFunctionRole")
    statements = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    actions = sorted({a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])})

    assert actions == ["secretsmanager:GetSecretValue", "sqs:SendMessage*"]
    assert all(s["Resource"] != "*" for s in statements)


def test_the_outputs_a_user_needs_exist(cfn):
    for output in (
        "WebhookUrl",
        "WebhookSecretArn",
        "EventsQueueUrl",
        "EventsDLQUrl",
        "EventsTableName",
        "AlertsTopicArn",
    ):
        assert output in cfn["Outputs"], output


def test_the_stalled_claim_sweep_runs_on_a_schedule_the_admin_function_answers(cfn):
    # The schedule's input is what admin_handler dispatches on, and the sweep may alert
    (schedule,) = resources_of(cfn, "AWS::Scheduler::Schedule").values()
    target = schedule["Properties"]["Target"]
    assert json.loads(target["Input"]) == {"sweep": "stalled"}
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    admin = cfn["Resources"]["AdminFunction"]["Properties"]
    assert admin["Environment"]["Variables"]["ALERT_TOPIC_ARN"] == {"Ref": "AlertsTopic"}
    # the sweep filters the Attention index on the lease and marks by the claim token
    table = cfn["Resources"]["EventsTable"]
    (attention,) = [i for i in table["Properties"]["GlobalSecondaryIndexes"] if i["IndexName"] == "Attention"]
    assert {"status", "leaseUntil", "claimToken"} <= set(attention["Projection"]["NonKeyAttributes"])
