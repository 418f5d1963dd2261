"""Template security: least privilege, encryption at rest, TLS, throttling, justified skips.

Checked on the CloudFormation that SAM's transform produces (so the policies SAM
generates count too). ``make scan`` runs checkov on the same template (with
.checkov.yaml: the checks skipped for every resource, each with its reason); these
tests pin the properties that matter here whatever the scanners' rule sets say.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from devtools.local_stack.template import translate
from tests.conftest import ROOT

CHECKOV_CONFIG = ROOT / ".checkov.yaml"
MAKEFILE = ROOT / "Makefile"

# Services whose resources hold the webhook data or its keys.
DATA_SERVICES = ("dynamodb", "sqs", "sns", "secretsmanager", "kms", "s3", "events")
# AWS managed policies a function role may carry: logging, tracing, and the one SAM
# attaches for an SQS event source.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}


@pytest.fixture(scope="module")
def translated() -> Any:
    return translate(ROOT / "template.yaml", {}, "security-test")


@pytest.fixture(scope="module")
def cfn(translated: Any) -> dict[str, Any]:
    return translated.cfn


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every statement, with both branches of an ``Fn::If`` (``AWS::NoValue`` dropped)."""
    for statement in as_list(document["Statement"]):
        if "Fn::If" in statement:
            for branch in statement["Fn::If"][1:]:
                if branch != {"Ref": "AWS::NoValue"}:
                    yield branch
        else:
            yield statement


def resolve(cfn: dict[str, Any], value: Any) -> Any:
    """A ``Ref`` to a parameter resolves to its default."""
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in cfn.get("Parameters", {}):
        return cfn["Parameters"][value["Ref"]].get("Default")
    return value


def test_no_role_allows_a_wildcard_action_or_a_wildcard_data_resource(cfn):
    # Given every IAM role in the deployed template, SAM-generated policies included
    roles = of_type(cfn, "AWS::IAM::Role")
    assert {"IngestFunctionRole", "ConsumerFunctionRole"} <= set(roles)

    for name, role in roles.items():
        for policy in role["Properties"].get("Policies", []):
            for statement in statements(policy["PolicyDocument"]):
                if statement.get("Effect") != "Allow":
                    continue
                actions = as_list(statement["Action"])
                # Then no action is "*" or a whole service ("sqs:*")
                assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, actions)
                # and no data action is granted on every resource
                if "*" in as_list(statement["Resource"]):
                    assert not [a for a in actions if a.split(":")[0] in DATA_SERVICES], (name, actions)
        managed = set(role["Properties"].get("ManagedPolicyArns", []))
        assert managed <= ALLOWED_MANAGED_POLICIES, (name, managed - ALLOWED_MANAGED_POLICIES)


def test_every_queue_table_and_topic_is_encrypted_at_rest(cfn):
    queues = of_type(cfn, "AWS::SQS::Queue")
    tables = of_type(cfn, "AWS::DynamoDB::Table")
    topics = of_type(cfn, "AWS::SNS::Topic")
    assert {"EventsQueue", "EventsDLQ"} <= set(queues) and "EventsTable" in tables and "AlertsTopic" in topics

    for name, queue in queues.items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), name
    for name, table in tables.items():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, name
    for name, topic in topics.items():
        assert topic["Properties"].get("KmsMasterKeyId"), name


def test_every_kms_key_rotates_and_grants_services_only_for_this_account(cfn):
    keys = of_type(cfn, "AWS::KMS::Key")
    assert keys

    for name, key in keys.items():
        assert key["Properties"]["EnableKeyRotation"] is True, name
        for statement in statements(key["Properties"]["KeyPolicy"]):
            if "Service" in statement.get("Principal", {}):  # confused deputy: pin the source account
                assert "aws:SourceAccount" in str(statement.get("Condition")), (name, statement.get("Sid"))


def test_every_queue_refuses_requests_without_tls(cfn):
    protected = set()
    for policy in of_type(cfn, "AWS::SQS::QueuePolicy").values():
        for statement in statements(policy["Properties"]["PolicyDocument"]):
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                protected |= {q["Ref"] for q in policy["Properties"]["Queues"]}

    assert set(of_type(cfn, "AWS::SQS::Queue")) <= protected


def test_every_api_stage_is_throttled(cfn):
    stages = of_type(cfn, "AWS::ApiGatewayV2::Stage")
    assert "WebhookApiApiGatewayDefaultStage" in stages

    for name, stage in stages.items():
        settings = stage["Properties"].get("DefaultRouteSettings") or {}
        rate = resolve(cfn, settings.get("ThrottlingRateLimit"))
        burst = resolve(cfn, settings.get("ThrottlingBurstLimit"))
        assert rate is not None and burst is not None, name
        assert 0 < float(rate) <= float(burst), (name, rate, burst)


def test_functions_can_be_invoked_only_by_their_own_api_routes(cfn):
    permissions = of_type(cfn, "AWS::Lambda::Permission")
    assert permissions

    for name, permission in permissions.items():
        props = permission["Properties"]
        assert props["Principal"].endswith(".amazonaws.com"), name
        assert props.get("SourceArn"), name  # without it, any API in any account could invoke


def test_no_function_url_or_public_resource_policy_exists(cfn):
    assert of_type(cfn, "AWS::Lambda::Url") == {}
    for kind in ("AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
        for name, policy in of_type(cfn, kind).items():
            for statement in statements(policy["Properties"]["PolicyDocument"]):
                if statement["Effect"] == "Allow":
                    assert statement.get("Principal") not in ("*", {"AWS": "*"}), name


def checkov_config_skips() -> dict[str, str]:
    """``skip-check`` of .checkov.yaml: each check id -> the comment block right above it."""
    text = CHECKOV_CONFIG.read_text()
    reasons: dict[str, str] = {}
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if stripped.startswith("- CKV_"):
            reasons[stripped.removeprefix("- ").split()[0]] = " ".join(comment)
        comment = []
    assert sorted(reasons) == sorted(yaml_parse(text)["skip-check"]), "one '- CKV_...' line per skip-check entry"
    return reasons


def test_every_checkov_skip_says_why(translated):
    # Given the checks skipped for every resource (.checkov.yaml) and for one resource
    # (Metadata.checkov.skip in the template)
    everywhere = checkov_config_skips()
    inline = [
        (name, skip)
        for name, resource in translated.sam["Resources"].items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]
    assert everywhere

    # Then each names a check and carries a reason a reviewer can weigh: in the config,
    # the comment above the entry starts with the check's id
    for check, reason in everywhere.items():
        assert check.startswith("CKV_") and reason.startswith(check), (check, reason[:40])
        assert len(reason.split()) >= 12, check
    for name, skip in inline:
        assert str(skip.get("id", "")).startswith("CKV_"), name
        assert len(str(skip.get("comment", "")).split()) >= 12, (name, skip.get("id"))
        # and a check skipped everywhere is not skipped again on one resource
        assert skip["id"] not in everywhere, (name, skip["id"])


def test_make_scan_runs_checkov_with_the_config_file():
    scan = MAKEFILE.read_text().split("\nscan:", 1)[1].split("\n\n", 1)[0]
    assert "--config-file .checkov.yaml" in scan, scan
