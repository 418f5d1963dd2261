"""What moto's CloudFormation does not do, as tables: resources it skips, and ``Fn::GetAtt``.

``CREATORS`` maps a resource type to the function that creates it through the APIs moto
does implement (or just names it, when the HTTP front plays it); ``ATTRIBUTES`` maps a
resource type to the function that answers ``Fn::GetAtt`` on it. A type missing from
``CREATORS`` is listed as not created locally; an attribute missing from ``ATTRIBUTES``
is a ``TemplateError`` naming the table to extend.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devtools.local_stack.template import ACCOUNT_ID, TemplateError

if TYPE_CHECKING:
    from devtools.local_stack.stack import LocalStack

REGION = "us-east-1"
LOCAL_API_ID = "local"

# -- creation ----------------------------------------------------------------------------
# Each creator: (stack, logical id, resolved-on-demand properties) -> the physical id.
Creator = Callable[["LocalStack", str, dict[str, Any]], str]


def _default_name(stack: LocalStack, logical_id: str, given: Any) -> str:
    return str(given) if given else f"{stack.stack_name}-{logical_id}"


def _secret(stack: LocalStack, logical_id: str, props: dict[str, Any]) -> str:
    resolver = stack.resolver
    name = _default_name(stack, logical_id, resolver.resolve(props.get("Name")))
    value = stack.secret_values.get(logical_id)
    if value is None and logical_id in stack.signing_secrets():
        value = json.dumps({"default": [stack.secret]})
    if value is None:
        value = str(resolver.resolve(props.get("SecretString", ""))) or os.urandom(16).hex()
    return str(
        stack.client("secretsmanager").create_secret(
            Name=name, Description=str(resolver.resolve(props.get("Description", ""))), SecretString=value
        )["ARN"]
    )


def _alarm(stack: LocalStack, logical_id: str, props: dict[str, Any]) -> str:
    args = {k: stack.resolver.resolve(v) for k, v in props.items()}
    args.setdefault("AlarmName", f"{stack.stack_name}-{logical_id}")
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in args:
            args[key] = int(args[key])
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
    for metric in args.get("Metrics") or []:
        if "Period" in metric:
            metric["Period"] = int(metric["Period"])
        if "Period" in (metric.get("MetricStat") or {}):
            metric["MetricStat"]["Period"] = int(metric["MetricStat"]["Period"])
    stack.client("cloudwatch").put_metric_alarm(**args)
    return str(args["AlarmName"])


def _dashboard(stack: LocalStack, logical_id: str, props: dict[str, Any]) -> str:
    name = _default_name(stack, logical_id, stack.resolver.resolve(props.get("DashboardName")))
    body = stack.resolver.resolve(props["DashboardBody"])
    stack.client("cloudwatch").put_dashboard(
        DashboardName=name, DashboardBody=body if isinstance(body, str) else json.dumps(body)
    )
    return name


def _queue_policy(stack: LocalStack, logical_id: str, props: dict[str, Any]) -> str:
    document = json.dumps(stack.resolver.resolve(props["PolicyDocument"]))
    for queue_url in stack.resolver.resolve(props["Queues"]):
        stack.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": document})
    return logical_id


def _metric_filter(stack: LocalStack, logical_id: str, props: dict[str, Any]) -> str:
    """Kept in moto; nothing evaluates it locally."""
    resolver = stack.resolver
    transformations = resolver.resolve(props["MetricTransformations"])
    for transformation in transformations:
        if "DefaultValue" in transformation:
            transformation["DefaultValue"] = float(transformation["DefaultValue"])
    name = _default_name(stack, logical_id, resolver.resolve(props.get("FilterName")))
    stack.client("logs").put_metric_filter(
        logGroupName=resolver.resolve(props["LogGroupName"]),
        filterName=name,
        filterPattern=resolver.resolve(props["FilterPattern"]),
        metricTransformations=[{k[0].lower() + k[1:]: v for k, v in t.items()} for t in transformations],
    )
    return name


def _named(stack: LocalStack, logical_id: str, props: dict[str, Any]) -> str:
    """Routes, stages, integrations, invoke permissions: played by the HTTP front."""
    return logical_id


CREATORS: dict[str, Creator] = {
    "AWS::SecretsManager::Secret": _secret,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudWatch::Dashboard": _dashboard,
    "AWS::SQS::QueuePolicy": _queue_policy,
    "AWS::Logs::MetricFilter": _metric_filter,
    "AWS::ApiGatewayV2::Api": lambda stack, logical_id, props: LOCAL_API_ID,  # served by the HTTP front
    # moto creates a layer version but reports no physical id
    "AWS::Lambda::LayerVersion": lambda stack, logical_id, props: (
        f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{logical_id}:1"
    ),
    "AWS::Lambda::Permission": _named,
}


def creator(kind: str) -> Creator | None:
    """The creator of a resource type; ``None``: not created locally."""
    if kind.startswith("AWS::ApiGatewayV2::") and kind not in CREATORS:
        return _named
    return CREATORS.get(kind)


# -- Fn::GetAtt --------------------------------------------------------------------------
# Each table entry: resource type -> {attribute: (stack, physical id) -> value}.
Getter = Callable[["LocalStack", str], Any]


def _queue_arn(stack: LocalStack, url: str) -> Any:
    attrs = stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"]


def _table(stack: LocalStack, name: str) -> dict[str, Any]:
    return dict(stack.client("dynamodb").describe_table(TableName=name)["Table"])


def _role(stack: LocalStack, name: str) -> dict[str, Any]:
    return dict(stack.client("iam").get_role(RoleName=name)["Role"])


ATTRIBUTES: dict[str, dict[str, Getter]] = {
    "AWS::SQS::Queue": {
        "QueueName": lambda stack, url: url.rsplit("/", 1)[-1],
        "QueueUrl": lambda stack, url: url,
        "Arn": _queue_arn,
    },
    "AWS::DynamoDB::Table": {
        "Arn": lambda stack, name: _table(stack, name)["TableArn"],
        "StreamArn": lambda stack, name: _table(stack, name).get("LatestStreamArn"),
    },
    "AWS::SNS::Topic": {
        "TopicArn": lambda stack, arn: arn,
        "TopicName": lambda stack, arn: arn.rsplit(":", 1)[-1],
    },
    "AWS::KMS::Key": {
        "Arn": lambda stack, key: stack.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"],
        "KeyId": lambda stack, key: key,
    },
    "AWS::Lambda::Function": {"Arn": lambda stack, name: f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"},
    "AWS::IAM::Role": {
        "Arn": lambda stack, name: _role(stack, name)["Arn"],
        "RoleId": lambda stack, name: _role(stack, name)["RoleId"],
    },
    "AWS::Logs::LogGroup": {"Arn": lambda stack, name: f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"},
    "AWS::SecretsManager::Secret": {"Id": lambda stack, arn: arn, "Arn": lambda stack, arn: arn},
    "AWS::S3::Bucket": {
        "Arn": lambda stack, name: f"arn:aws:s3:::{name}",
        "DomainName": lambda stack, name: f"{name}.s3.amazonaws.com",
    },
    "AWS::CloudWatch::Alarm": {"Arn": lambda stack, name: f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"},
    "AWS::ApiGatewayV2::Api": {
        "ApiEndpoint": lambda stack, api: stack.url,
        "ApiId": lambda stack, api: LOCAL_API_ID,
    },
}


def attribute(stack: LocalStack, kind: str, physical_id: str, name: str) -> Any:
    """``Fn::GetAtt`` for the resource types this project's template uses."""
    getter = ATTRIBUTES.get(kind, {}).get(name)
    value = getter(stack, physical_id) if getter is not None else None
    if value is None:
        raise TemplateError(f"GetAtt {kind}.{name} is not reproduced locally; add it to resources.ATTRIBUTES")
    return value


# -- the template moto gets --------------------------------------------------------------
def _placeholder(name: str) -> str:
    return f"local-placeholder-{name}"


def _without(removed: set[str], value: Any) -> Any:
    """``value`` with every ``Ref``/``GetAtt``/``Sub`` reference to a removed resource a placeholder."""
    if isinstance(value, list):
        return [_without(removed, v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and arg in removed:
            return _placeholder(arg)
        if key == "Fn::GetAtt":
            target = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
            if target in removed:
                return _placeholder(target)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            text = re.sub(
                r"\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}",
                lambda m: _placeholder(m.group(1)) if m.group(1) in removed else m.group(0),
                text,
            )
            return {"Fn::Sub": text if isinstance(arg, str) else [text, _without(removed, variables)]}
    return {k: _without(removed, v) for k, v in value.items()}


def for_moto(cfn: dict[str, Any]) -> dict[str, Any]:
    """The template without the resource types moto's CloudFormation lacks (the stack creates them).

    References to a removed resource become a placeholder string: moto validates every
    ``GetAtt`` and would refuse the stack. The functions' environment and the outputs
    are resolved from the full template by ``Resolver``, never from moto's copy.
    """
    from moto.cloudformation.parsing import get_model_map

    supported = set(get_model_map())
    resources = cfn.get("Resources") or {}
    removed = {k for k, r in resources.items() if r["Type"] not in supported}
    kept = {}
    for logical_id, resource in resources.items():
        if logical_id in removed:
            continue
        resource = _without(removed, resource)
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in removed:
            resource.pop("DependsOn")
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in removed]
        kept[logical_id] = resource
    return {k: v for k, v in cfn.items() if k != "Outputs"} | {"Resources": kept}


def env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
