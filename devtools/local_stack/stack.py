"""The whole flow on one machine, without AWS or Docker: ``make run``.

What it does, in order:

1. starts moto's server on 127.0.0.1 (a free port) in this process;
2. translates ``template.yaml`` to CloudFormation offline (aws-sam-translator), zips
   each CodeUri/ContentUri folder into a local S3 bucket and creates the stack in
   moto's CloudFormation, with every SQS event source mapping disabled (moto would
   invoke the function in Docker); then creates what moto's CloudFormation skips:
   Secrets Manager secrets (holding the local signing secret, so ingest runs its
   real Secrets Manager path), CloudWatch alarms and dashboards, queue policies;
3. loads every function of the template in this process with the environment the
   template gives it (Refs and GetAtts resolved to the moto resources,
   ``AWS_ENDPOINT_URL`` pointing at moto, fake credentials);
4. serves every ``HttpApi`` route of the template on http://127.0.0.1:3000 as API
   Gateway HTTP API payload v2 events (``devtools.local_http``); IAM-authorised
   routes get an IAM caller context, but no SigV4 check is made locally;
5. feeds each SQS event source mapping's function from its queue as Lambda does
   (``devtools.local_sqs``): batch size, batching window, the queue's visibility
   timeout, ``ReportBatchItemFailures``, and the queue's own redrive to the DLQ.

It prints the URL, the local signing secret and the command that sends a test
event, then one line per webhook request and one per consumed record. The
functions' own JSON logs and metrics go to ``.local-stack/functions.log`` (printed
too with ``--verbose``). Ctrl-C or SIGTERM stops everything: it is one process.

The HTTP front applies each API's stage throttle from the template (token bucket:
``ThrottlingBurstLimit`` at once, ``ThrottlingRateLimit`` per second; a request
without a token gets API Gateway's ``429`` and never reaches the function), so
``--param ApiThrottleRateLimit=1 --param ApiThrottleBurstLimit=5`` shows a burst
being throttled.

What moto does not do: evaluate CloudWatch alarms (the alarm exists, it never fires;
the consumer's own alert on an event's last attempt does reach the topic), or enforce
IAM, queue or key policies.

Command line::

    python -m devtools.local_stack [--port 3000] [--param MaxReceiveCount=3 ...]
        [--handler-modules my.module] [--secret local-dev-secret] [--verbose]
        [--chaos dynamodb-lost-replies=0.02,sqs-duplicates=0.05 [--chaos-seed 7]]

``--chaos`` injects faults (``devtools.chaos``): DynamoDB writes applied whose reply is
lost, and duplicate SQS deliveries; counted in ``--chaos-report`` (JSON).

Importable API, in-process: it sets the AWS_* variables of this process while it
runs, and moto's state is global to a process, so one at a time (a new one starts
from an empty moto, like new containers)::

    from devtools.local_stack import LocalStack
    with LocalStack(port=0, params={"MaxReceiveCount": "3"}) as stack:
        stack.url                       # http://127.0.0.1:<port>
        stack.outputs["WebhookUrl"]     # the template's outputs, resolved locally
        stack.endpoint_url              # moto: pass to boto3 clients
        stack.client("dynamodb")        # a boto3 client for moto

or as a subprocess (what the e2e tests use; nothing leaks into the caller)::

    from devtools.local_stack import LocalStackProcess
    with LocalStackProcess(params={...}, handler_modules=["devtools.e2e_handlers"]) as stack:
        stack.url, stack.outputs, stack.endpoint_url, stack.client("sqs")
        stack.log_text()                # the banner and one line per request / consumed record
        stack.function_log_text()       # the functions' JSON logs and EMF metrics
        stack.stop(signum=signal.SIGTERM)   # default SIGINT; returns the exit code (0 = clean)

``stack.info`` is the same dict in both: ``url``, ``webhook_url``, ``endpoint_url``,
``region``, ``secret``, ``stack_name``, ``outputs``, ``parameters``, ``routes``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from devtools.chaos import Chaos, ChaosSpec, atomic_item_writes
from devtools.local_http import Exchange, HttpFront, Route, Throttle
from devtools.local_lambda import LocalFunction, stack_environment
from devtools.local_sqs import Delivery, SqsEventSource
from devtools.local_template import ACCOUNT_ID, ROOT, Resolver, TemplateError, parameter_values, translate
from devtools.samples import LOCAL_SECRET

REGION = "us-east-1"
DEFAULT_STACK_NAME = "maintainx-webhooks-local"
CODE_BUCKET = "local-stack-code"
LOCAL_API_ID = "local"
log = logging.getLogger("devtools.local_stack")

# Outcome fields the functions log (Powertools ``extra``) that the delivery lines show.
_TAP_FIELDS = ("event_id", "event_type", "outcome", "duration_ms", "error", "reason", "status", "receive_count")


class _LogTap(logging.Handler):
    """Reads the functions' structured log records for the one-line-per-delivery log.

    The consumer logs one record per event with ``outcome`` (processed, duplicate,
    ignored, failed, parked...); those are kept by event id. Anything else with one
    of the fields above is kept per thread, for the HTTP request running in it.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._lock = threading.Lock()
        self._outcomes: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        fields = {k: getattr(record, k) for k in _TAP_FIELDS if hasattr(record, k)}
        if not fields:
            return
        if "outcome" in fields and "event_id" in fields:
            with self._lock:
                bucket = self._outcomes[str(fields["event_id"])]
                bucket.append(fields)
                del bucket[:-20]
            return
        seen = getattr(self._local, "fields", None)
        if seen is None:
            seen = self._local.fields = []
        seen.append(fields)
        del seen[:-20]

    def take_thread(self) -> list[dict[str, Any]]:
        seen = getattr(self._local, "fields", None) or []
        self._local.fields = []
        return seen

    def take_outcome(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            bucket = self._outcomes.get(event_id)
            if not bucket:
                return None
            found = bucket.pop(0)
            if not bucket:
                del self._outcomes[event_id]
            return found


class LocalStack:
    """The template's stack on moto, its HTTP API and its queue consumers, in this process."""

    def __init__(
        self,
        *,
        port: int = 3000,
        host: str = "127.0.0.1",
        moto_port: int = 0,
        template: Path | str = ROOT / "template.yaml",
        params: Mapping[str, str] | None = None,
        handler_modules: Sequence[str] = (),
        secret: str = LOCAL_SECRET,
        secret_values: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        consumer_concurrency: int | None = None,
        out: TextIO | None = None,
        chaos: Chaos | None = None,
    ) -> None:
        self.chaos = chaos  # fault injection (devtools.chaos), off when None
        self.port = port
        self.host = host
        self.moto_port = moto_port
        self.template = Path(template)
        self.params = dict(params or {})
        self.handler_modules = [m for m in handler_modules if m]
        self.secret = secret
        self.secret_values = dict(secret_values or {})
        self.stack_name = stack_name
        self.consumer_concurrency = consumer_concurrency
        self.out = out if out is not None else sys.stdout
        self.functions: dict[str, LocalFunction] = {}
        self.routes: list[Route] = []
        self.throttles: dict[str, Throttle] = {}  # HTTP API logical id -> its stage throttle
        self.event_sources: list[SqsEventSource] = []
        self.outputs: dict[str, Any] = {}
        self.parameters: dict[str, str] = {}
        self.skipped: list[str] = []  # resources neither moto nor this module creates
        self.info: dict[str, Any] = {}
        self.ready_seconds = 0.0
        self._exit = ExitStack()
        self._tap = _LogTap()
        self._print_lock = threading.Lock()
        self._max_receive: dict[str, int] = {}
        self._moto: Any = None
        self._front: HttpFront | None = None
        self._resolver: Resolver | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._front.url if self._front else f"http://{self.host}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        )

    def start(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.perf_counter() - started
        return self.info

    def stop(self) -> None:
        """Stop pollers, then the HTTP front, then moto; restore this process's environment."""
        self._exit.close()

    def _start(self) -> None:
        _quiet_moto()
        from moto.server import ThreadedMotoServer

        self._moto = ThreadedMotoServer(ip_address=self.host, port=self.moto_port, verbose=False)
        self._moto.start()
        self._exit.callback(self._moto.stop)
        self._exit.enter_context(atomic_item_writes())  # a condition and its write are one step, as on DynamoDB
        # moto's state is global to the process: start from nothing, leave nothing behind.
        # (So one in-process LocalStack at a time; LocalStackProcess runs any number.)
        self._reset_moto()
        self._exit.callback(self._reset_moto)
        _fresh_parameter_providers()  # as in a new container: no client bound to an earlier stack's moto
        self._exit.enter_context(
            stack_environment(
                {
                    "AWS_ENDPOINT_URL": self.endpoint_url,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": REGION,
                    "AWS_REGION": REGION,
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    "AWS_XRAY_SDK_ENABLED": "false",
                },
                remove=("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"),
            )
        )
        self._create_stack()
        if self.chaos is not None:
            self.chaos.install()  # before the functions build their clients
            self._exit.callback(self.chaos.uninstall)
        self._load_functions()
        self._front = HttpFront(
            self.routes,
            host=self.host,
            port=self.port,
            account_id=ACCOUNT_ID,
            on_exchange=self._print_exchange,
            throttles=self.throttles,
        )
        self._front.start()
        self._exit.callback(self._front.stop)
        self._resolve_outputs()
        for source in self.event_sources:
            source.start()
        self._exit.callback(self._stop_event_sources)
        self.info = {
            "url": self.url,
            "webhook_url": self.outputs.get("WebhookUrl", f"{self.url}/webhooks/maintainx"),
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "secret": self.secret,
            "stack_name": self.stack_name,
            "outputs": self.outputs,
            "parameters": self.parameters,
            "routes": [r.route_key + " -> " + r.function.logical_id for r in self.routes],
            "throttles": {
                api: {"rate": t.default[0], "burst": t.default[1]} if t.default else None
                for api, t in self.throttles.items()
            },
            "pid": os.getpid(),
        }

    def _reset_moto(self) -> None:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - moto on 127.0.0.1
            response.read()

    def _stop_event_sources(self) -> None:
        for source in self.event_sources:
            source._stop.set()
        for source in self.event_sources:
            source.stop(timeout=2)  # an invocation still running after that fails once moto stops

    # -- the stack --------------------------------------------------------------------------
    def _create_stack(self) -> None:
        overrides = dict(self.params)
        translated = translate(self.template, {}, CODE_BUCKET)
        cfn = translated.cfn
        if self.handler_modules:
            if "HandlerModules" not in (cfn.get("Parameters") or {}):
                raise TemplateError("--handler-modules needs the template's HandlerModules parameter")
            current = overrides.get("HandlerModules") or parameter_values(cfn, {})["HandlerModules"]
            overrides["HandlerModules"] = ",".join([current, *self.handler_modules])
        self.parameters = parameter_values(cfn, overrides)
        self._translated = translated

        s3 = self.client("s3")
        s3.create_bucket(Bucket=CODE_BUCKET)
        for asset in translated.assets:
            s3.put_object(Bucket=CODE_BUCKET, Key=asset.key, Body=_zip_folder(asset.path))
        for resource in cfn["Resources"].values():
            if resource["Type"] == "AWS::Lambda::EventSourceMapping":
                resource["Properties"]["Enabled"] = False  # else moto invokes the function in Docker

        cloudformation = self.client("cloudformation")
        cloudformation.create_stack(
            StackName=self.stack_name,
            TemplateBody=json.dumps(_for_moto(cfn)),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cloudformation.describe_stacks(StackName=self.stack_name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise TemplateError(
                f"moto could not create the stack: {stack['StackStatus']} {stack.get('StackStatusReason')}"
            )
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.describe_stack_resources(StackName=self.stack_name)["StackResources"]
            if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
        }
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": stack["StackId"],
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": "",
        }
        self._resolver = Resolver(cfn, self.parameters, pseudo, physical, self._attribute)
        self._create_skipped()

    def _create_skipped(self) -> None:
        """What moto's CloudFormation does not implement, created through the APIs it does.

        In template order, in passes: a resource that refers to one not created yet
        (a dashboard showing alarms) waits for the next pass.
        """
        resolver = self._resolver
        assert resolver is not None
        pending = [
            logical_id
            for logical_id in resolver.resources()
            if logical_id not in resolver.physical_ids and resolver.is_created(logical_id)
        ]
        while pending:
            waiting: list[str] = []
            problems: list[str] = []
            for logical_id in pending:
                try:
                    self._create_one(logical_id)
                except TemplateError as exc:
                    waiting.append(logical_id)
                    problems.append(str(exc))
            if len(waiting) == len(pending):
                raise TemplateError("could not create locally: " + "; ".join(problems))
            pending = waiting

    def _create_one(self, logical_id: str) -> None:
        resolver = self._resolver
        assert resolver is not None
        resource = resolver.resources()[logical_id]
        kind = resource["Type"]
        props = resource.get("Properties") or {}
        if kind == "AWS::SecretsManager::Secret":
            name = resolver.resolve(props.get("Name")) or f"{self.stack_name}-{logical_id}"
            value = self.secret_values.get(logical_id)
            if value is None and logical_id in self._signing_secrets():
                value = json.dumps({"default": [self.secret]})
            if value is None:
                value = str(resolver.resolve(props.get("SecretString", ""))) or os.urandom(16).hex()
            arn = self.client("secretsmanager").create_secret(
                Name=name, Description=str(resolver.resolve(props.get("Description", ""))), SecretString=value
            )["ARN"]
            resolver.physical_ids[logical_id] = arn
        elif kind == "AWS::CloudWatch::Alarm":
            args = {k: resolver.resolve(v) for k, v in props.items()}
            args.setdefault("AlarmName", f"{self.stack_name}-{logical_id}")
            for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
                if key in args:
                    args[key] = int(args[key])
            if "Threshold" in args:
                args["Threshold"] = float(args["Threshold"])
            for metric in args.get("Metrics") or []:
                for key in ("Period",):
                    if key in metric:
                        metric[key] = int(metric[key])
                if "Period" in (metric.get("MetricStat") or {}):
                    metric["MetricStat"]["Period"] = int(metric["MetricStat"]["Period"])
            self.client("cloudwatch").put_metric_alarm(**args)
            resolver.physical_ids[logical_id] = args["AlarmName"]
        elif kind == "AWS::CloudWatch::Dashboard":
            name = resolver.resolve(props.get("DashboardName")) or f"{self.stack_name}-{logical_id}"
            body = resolver.resolve(props["DashboardBody"])
            self.client("cloudwatch").put_dashboard(
                DashboardName=name, DashboardBody=body if isinstance(body, str) else json.dumps(body)
            )
            resolver.physical_ids[logical_id] = name
        elif kind == "AWS::SQS::QueuePolicy":
            document = json.dumps(resolver.resolve(props["PolicyDocument"]))
            for queue_url in resolver.resolve(props["Queues"]):
                self.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": document})
            resolver.physical_ids[logical_id] = logical_id
        elif kind == "AWS::Logs::MetricFilter":  # kept in moto; nothing evaluates it locally
            transformations = resolver.resolve(props["MetricTransformations"])
            for transformation in transformations:
                if "DefaultValue" in transformation:
                    transformation["DefaultValue"] = float(transformation["DefaultValue"])
            name = resolver.resolve(props.get("FilterName")) or f"{self.stack_name}-{logical_id}"
            self.client("logs").put_metric_filter(
                logGroupName=resolver.resolve(props["LogGroupName"]),
                filterName=name,
                filterPattern=resolver.resolve(props["FilterPattern"]),
                metricTransformations=[
                    {k[0].lower() + k[1:]: v for k, v in transformation.items()} for transformation in transformations
                ],
            )
            resolver.physical_ids[logical_id] = name
        elif kind == "AWS::ApiGatewayV2::Api":
            resolver.physical_ids[logical_id] = LOCAL_API_ID  # served by devtools.local_http
        elif kind == "AWS::Lambda::LayerVersion":  # moto creates it but reports no physical id
            resolver.physical_ids[logical_id] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{logical_id}:1"
        elif kind.startswith("AWS::ApiGatewayV2::") or kind == "AWS::Lambda::Permission":
            resolver.physical_ids[logical_id] = logical_id  # routes, stages, invoke permissions: the HTTP front
        else:
            resolver.physical_ids[logical_id] = f"not-created-locally-{logical_id}"
            self.skipped.append(f"{logical_id} ({kind})")

    def _signing_secrets(self) -> set[str]:
        """Secrets a function reads its webhook signing secrets from (``WEBHOOK_SECRET_ARN``)."""
        found = set()
        for resource in self._translated.cfn["Resources"].values():
            variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
            ref = variables.get("WEBHOOK_SECRET_ARN")
            if isinstance(ref, dict) and "Ref" in ref:
                found.add(ref["Ref"])
        return found

    def _attribute(self, kind: str, physical_id: str, attribute: str) -> Any:
        """``Fn::GetAtt`` for the resource types this project's template uses."""
        if kind == "AWS::SQS::Queue":
            if attribute == "QueueName":
                return physical_id.rsplit("/", 1)[-1]
            if attribute == "QueueUrl":
                return physical_id
            if attribute == "Arn":
                attrs = self.client("sqs").get_queue_attributes(QueueUrl=physical_id, AttributeNames=["QueueArn"])
                return attrs["Attributes"]["QueueArn"]
        elif kind == "AWS::DynamoDB::Table":
            table = self.client("dynamodb").describe_table(TableName=physical_id)["Table"]
            value = {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn")}.get(attribute)
            if value is not None:
                return value
        elif kind == "AWS::SNS::Topic":
            if attribute == "TopicArn":
                return physical_id
            if attribute == "TopicName":
                return physical_id.rsplit(":", 1)[-1]
        elif kind == "AWS::KMS::Key":
            if attribute == "Arn":
                return self.client("kms").describe_key(KeyId=physical_id)["KeyMetadata"]["Arn"]
            if attribute == "KeyId":
                return physical_id
        elif kind == "AWS::Lambda::Function" and attribute == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{physical_id}"
        elif kind == "AWS::IAM::Role" and attribute in ("Arn", "RoleId"):
            role = self.client("iam").get_role(RoleName=physical_id)["Role"]
            return role["Arn"] if attribute == "Arn" else role["RoleId"]
        elif kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{physical_id}:*"
        elif kind == "AWS::SecretsManager::Secret" and attribute in ("Id", "Arn"):
            return physical_id
        elif kind == "AWS::S3::Bucket":
            value = {"Arn": f"arn:aws:s3:::{physical_id}", "DomainName": f"{physical_id}.s3.amazonaws.com"}.get(
                attribute
            )
            if value is not None:
                return value
        elif kind == "AWS::CloudWatch::Alarm" and attribute == "Arn":
            return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{physical_id}"
        elif kind == "AWS::ApiGatewayV2::Api":
            if attribute == "ApiEndpoint":
                return self.url
            if attribute == "ApiId":
                return LOCAL_API_ID
        raise TemplateError(f"GetAtt {kind}.{attribute} is not reproduced locally; add it to LocalStack._attribute")

    # -- functions, routes, event sources ---------------------------------------------------
    def _load_functions(self) -> None:
        resolver = self._resolver
        assert resolver is not None
        translated = self._translated
        for path in [*translated.layer_dirs, *translated.function_dirs.values(), ROOT]:
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
        for logical_id, code_dir in translated.function_dirs.items():
            props = resolver.resources()[logical_id]["Properties"]
            env = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
            name = resolver.physical_ids[logical_id]
            timeout = int(resolver.resolve(props.get("Timeout", 3)))
            memory = int(resolver.resolve(props.get("MemorySize", 128)))
            env = {str(k): _env_text(v) for k, v in env.items()}
            env.update(
                {
                    "AWS_LAMBDA_FUNCTION_NAME": name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
                    "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
                }
            )
            function = LocalFunction(
                logical_id=logical_id,
                name=name,
                arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
                code_dir=code_dir,
                handler=str(resolver.resolve(props["Handler"])),
                environment=env,
                timeout_s=timeout,
                memory_mb=memory,
            )
            function.load()
            self.functions[logical_id] = function
            service = env.get("POWERTOOLS_SERVICE_NAME")
            if service and self._tap not in logging.getLogger(service).handlers:
                logging.getLogger(service).addHandler(self._tap)
                self._exit.callback(logging.getLogger(service).removeHandler, self._tap)
        self.routes = self._routes()
        self.throttles = self._throttles()
        self.event_sources = self._event_sources()

    def _routes(self) -> list[Route]:
        """Every HttpApi event of every function in the SAM template."""
        sam = self._translated.sam
        resources = sam.get("Resources") or {}
        globals_api = ((sam.get("Globals") or {}).get("HttpApi") or {}).get("Auth") or {}
        routes: list[Route] = []
        for logical_id, resource in resources.items():
            if logical_id not in self.functions:
                continue
            for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties") or {}
                api_auth = globals_api
                api_ref = props.get("ApiId")
                api_id = "ServerlessHttpApi"  # SAM's implicit API, for an event without ApiId
                if isinstance(api_ref, dict) and "Ref" in api_ref:
                    api_id = str(api_ref["Ref"])
                    api = resources.get(api_id) or {}
                    api_auth = ((api.get("Properties") or {}).get("Auth")) or globals_api
                authorizer = (props.get("Auth") or {}).get("Authorizer") or api_auth.get("DefaultAuthorizer")
                method = str(props.get("Method", "ANY")).upper()
                if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                    method = "ANY"
                routes.append(
                    Route(
                        method=method,
                        path=str(props.get("Path", "/{proxy+}")),
                        function=self.functions[logical_id],
                        iam_auth=authorizer == "AWS_IAM",
                        api=api_id,
                    )
                )
        return routes

    def _throttles(self) -> dict[str, Throttle]:
        """Each HTTP API's stage throttle, resolved (parameters applied) from the translated template."""
        resolver = self._resolver
        assert resolver is not None

        def limits(settings: Any) -> dict[str, float]:
            settings = settings if isinstance(settings, dict) else {}
            keys = {"ThrottlingRateLimit": "rate", "ThrottlingBurstLimit": "burst"}
            return {name: float(settings[key]) for key, name in keys.items() if settings.get(key) is not None}

        throttles: dict[str, Throttle] = {}
        for logical_id, resource in resolver.resources().items():
            if resource["Type"] != "AWS::ApiGatewayV2::Stage" or not resolver.is_created(logical_id):
                continue
            props = resource.get("Properties") or {}
            api_ref = props.get("ApiId")
            if not (isinstance(api_ref, dict) and "Ref" in api_ref):
                continue
            default = limits(resolver.resolve(props.get("DefaultRouteSettings")))
            routes = {}
            for route_key, settings in (resolver.resolve(props.get("RouteSettings")) or {}).items():
                own = limits(settings)
                merged = {**default, **own}
                if own and len(merged) == 2:
                    routes[str(route_key)] = (merged["rate"], merged["burst"])
            throttles[str(api_ref["Ref"])] = Throttle(
                (default["rate"], default["burst"]) if len(default) == 2 else None, routes
            )
        return throttles

    def _event_sources(self) -> list[SqsEventSource]:
        resolver = self._resolver
        assert resolver is not None
        by_name = {f.name: f for f in self.functions.values()}
        sqs = self.client("sqs")
        sources = []
        for resource in resolver.resources().values():
            if resource["Type"] != "AWS::Lambda::EventSourceMapping":
                continue
            props = resolver.resolve(resource["Properties"])
            arn = str(props.get("EventSourceArn", ""))
            function = by_name.get(str(props.get("FunctionName")))
            if not arn.startswith("arn:aws:sqs:") or function is None:
                continue
            queue_url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
            redrive = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
            policy = json.loads((redrive.get("Attributes") or {}).get("RedrivePolicy") or "{}")
            if policy:
                self._max_receive[arn] = int(policy["maxReceiveCount"])
            scaling = int((props.get("ScalingConfig") or {}).get("MaximumConcurrency", 5))
            sources.append(
                SqsEventSource(
                    sqs,
                    queue_url=queue_url,
                    queue_arn=arn,
                    function=function,
                    batch_size=int(props.get("BatchSize", 10)),
                    batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    concurrency=self.consumer_concurrency or min(scaling, 5),
                    region=REGION,
                    on_batch=lambda batch, arn=arn: self._print_batch(arn, batch),
                    redelivery=self.chaos,
                )
            )
        return sources

    def _resolve_outputs(self) -> None:
        resolver = self._resolver
        assert resolver is not None
        api_base = f"https://{LOCAL_API_ID}.execute-api.{REGION}.amazonaws.com"
        for name, spec in (resolver.cfn.get("Outputs") or {}).items():
            if "Condition" in spec and not resolver.condition(spec["Condition"]):
                continue
            value = resolver.resolve(spec["Value"])
            if isinstance(value, str):
                value = value.replace(api_base, self.url)
            self.outputs[name] = value

    # -- the delivery log -------------------------------------------------------------------
    def _line(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._print_lock:
            self.out.write(f"{stamp}  {text}\n")
            self.out.flush()

    def _print_exchange(self, exchange: Exchange) -> None:
        seen = self._tap.take_thread()
        target = f"{exchange.method} {exchange.path}"
        if exchange.status < 300:
            try:
                answer = json.loads(exchange.response_body)
            except ValueError:
                answer = {}
            event_id = answer.get("eventId", "") if isinstance(answer, dict) else ""
            event_type = next((str(f["event_type"]) for f in seen if f.get("event_type")), "")
            detail = f"{event_id}  {event_type}".strip()
        elif exchange.status == 429:
            detail = "throttled (the API's stage throttle; the function was not invoked)"
        else:
            detail = next((str(f["reason"]) for f in seen if f.get("reason")), "")
        self._line(f"http      {exchange.status}  {target}  {detail}  {exchange.duration_ms:.0f} ms")

    def _print_batch(self, queue_arn: str, batch: list[Delivery]) -> None:
        limit = self._max_receive.get(queue_arn)
        for delivery in batch:
            event_id = delivery.attributes.get("eventId", delivery.message_id)
            seen = self._tap.take_outcome(event_id) or {}
            outcome = str(seen.get("outcome") or ("ok" if delivery.deleted else "retry"))
            event_type = seen.get("event_type") or delivery.attributes.get("eventType", "")
            ms = seen.get("duration_ms", delivery.duration_ms)
            attempt = f"attempt {delivery.receive_count}" + (f"/{limit}" if limit else "")
            text = f"consumer  {outcome:<9}  {event_id}  {event_type}  {float(ms):.0f} ms  {attempt}"
            if not delivery.deleted and limit and delivery.receive_count >= limit:
                text += "  -> the queue moves it to the DLQ"
            error = seen.get("error") or delivery.error
            if error:
                text += f"  ({str(error)[:160]})"
            self._line(text)

    def banner(self) -> str:
        webhook = self.info["webhook_url"]
        port = self.url.rsplit(":", 1)[1]
        make_send = "make send" if port == "3000" else f"make send PORT={port}"
        lines = [
            f"Local stack ready in {self.ready_seconds:.1f} s (moto at {self.endpoint_url}, region {REGION}).",
            "",
            f"  Webhook URL     {webhook}   (or {webhook}/<source>)",
            f"  Signing secret  {self.secret}",
            f"  Send an event   {make_send}   (or: python -m devtools.send --url "
            f"{webhook} --secret {self.secret} --type workorder.created)",
            "",
            "  Routes (IAM authorisation is not checked locally):",
            *(f"    {route}" for route in self.info["routes"]),
            "  Throttles       "
            + (
                ", ".join(
                    f"{api} {t.default[0]:g}/s burst {t.default[1]:g}" if t.default else f"{api} per route"
                    for api, t in self.throttles.items()
                )
                or "none"
            )
            + " (429 past them)",
            "  Resources       "
            + ", ".join(
                f"{k}={str(v).rsplit('/', 1)[-1].rsplit(':', 1)[-1]}"
                for k, v in self.outputs.items()
                if any(word in k for word in ("Table", "Queue", "DLQ", "Topic")) and not k.endswith("Arn")
            ),
            "  AWS CLI/boto3   any credentials, --endpoint-url " + self.endpoint_url,
        ]
        if self.skipped:
            lines.append(f"  Not created locally: {', '.join(self.skipped)}")
        lines += ["", "Ctrl-C stops everything. One line per webhook request and per consumed record:", ""]
        return "\n".join(lines)


def _for_moto(cfn: dict[str, Any]) -> dict[str, Any]:
    """The template without the resource types moto's CloudFormation lacks (this module creates them).

    References to a removed resource become a placeholder string: moto validates every
    ``GetAtt`` and would refuse the stack. The functions' environment and the outputs
    are resolved from the full template by ``Resolver``, never from moto's copy.
    """
    from moto.cloudformation.parsing import get_model_map

    supported = set(get_model_map())
    resources = cfn.get("Resources") or {}
    removed = {k for k, r in resources.items() if r["Type"] not in supported}

    def placeholder(name: str) -> str:
        return f"local-placeholder-{name}"

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [clean(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and arg in removed:
                return placeholder(arg)
            if key == "Fn::GetAtt":
                target = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
                if target in removed:
                    return placeholder(target)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                text = re.sub(
                    r"\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}",
                    lambda m: placeholder(m.group(1)) if m.group(1) in removed else m.group(0),
                    text,
                )
                return {"Fn::Sub": text if isinstance(arg, str) else [text, clean(variables)]}
        return {k: clean(v) for k, v in value.items()}

    kept = {}
    for logical_id, resource in resources.items():
        if logical_id in removed:
            continue
        resource = clean(resource)
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in removed:
            resource.pop("DependsOn")
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in removed]
        kept[logical_id] = resource
    return {k: v for k, v in cfn.items() if k != "Outputs"} | {"Resources": kept}


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def _fresh_parameter_providers() -> None:
    """Drop Powertools' cached parameter providers (their boto3 clients) and cached values."""
    from aws_lambda_powertools.utilities.parameters import base, constants

    constants.DEFAULT_PROVIDERS.clear()
    base.clear_caches()


def _quiet_moto() -> None:
    """moto warns about each resource type its CloudFormation skips; the stack handles those itself."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)


# -- as a subprocess -----------------------------------------------------------------------


class LocalStackProcess:
    """``python -m devtools.local_stack`` in a child process, for tests and tools.

    ``start()`` waits until the child has written its info file (the same dict as
    ``LocalStack.info``), ``stop()`` sends SIGINT and waits for it to exit.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        params: Mapping[str, str] | None = None,
        handler_modules: Sequence[str] = (),
        secret: str = LOCAL_SECRET,
        secret_values: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 60,
    ) -> None:
        self.args = ["--port", str(port), "--secret", secret, *extra_args]
        for key, value in (params or {}).items():
            self.args += ["--param", f"{key}={value}"]
        for key, value in (secret_values or {}).items():
            self.args += ["--secret-value", f"{key}={value}"]
        if handler_modules:
            self.args += ["--handler-modules", ",".join(handler_modules)]
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.info: dict[str, Any] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="local-stack-")
        self.log_path = Path(self._dir.name) / "stack.log"
        self.function_log_path = Path(self._dir.name) / "functions.log"
        self.ready_seconds = 0.0

    def __enter__(self) -> LocalStackProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def endpoint_url(self) -> str:
        return str(self.info["endpoint_url"])

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.info["outputs"])

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        )

    def log_text(self) -> str:
        """What the stack printed: the banner and one line per request and per consumed record."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def function_log_text(self) -> str:
        """The functions' JSON logs and EMF metrics (CloudWatch Logs, locally)."""
        return self.function_log_path.read_text(errors="replace") if self.function_log_path.exists() else ""

    def start(self) -> dict[str, Any]:
        ready = Path(self._dir.name) / "ready.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        started = time.perf_counter()
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devtools.local_stack",
                    *self.args,
                    "--log-file",
                    str(self.function_log_path),
                    "--ready-file",
                    str(ready),
                ],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.ready_timeout
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the local stack exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the local stack was not ready in {self.ready_timeout} s:\n{self.log_text()}")
            time.sleep(0.05)
        self.ready_seconds = time.perf_counter() - started
        self.info = json.loads(ready.read_text())
        return self.info

    def stop(self, timeout: float = 15, signum: int = signal.SIGINT) -> int | None:
        """Signal the stack (Ctrl-C by default) and wait for it; its exit code (0 = clean)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode


# -- command line --------------------------------------------------------------------------


def _pairs(values: Sequence[str]) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected NAME=VALUE, got {value!r}")
        result[key] = rest
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.local_stack", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "3000")),
        help="HTTP API port on 127.0.0.1 (0 = any free port); default 3000",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--moto-port", type=int, default=0, help="moto's port (0 = any free port)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, e.g. --param MaxReceiveCount=3 (repeatable)",
    )
    parser.add_argument("--handler-modules", default="", help="extra handler modules, comma separated")
    parser.add_argument("--secret", default=LOCAL_SECRET, help="signing secret of the default source")
    parser.add_argument(
        "--secret-value",
        action="append",
        default=[],
        metavar="LOGICAL_ID=VALUE",
        help="initial value of one of the template's secrets, e.g. SlackWebhookSecret='{...}'",
    )
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument("--consumer-concurrency", type=int, default=None, help="pollers per event source (default 5)")
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument(
        "--log-file",
        default=str(ROOT / ".local-stack" / "functions.log"),
        help="where the functions' JSON logs and metrics go",
    )
    parser.add_argument("--verbose", action="store_true", help="print the functions' JSON logs too")
    parser.add_argument(
        "--chaos",
        default="",
        metavar="FAULT=SHARE,...",
        help="inject faults (devtools.chaos): dynamodb-lost-replies=0.02,sqs-duplicates=0.05",
    )
    parser.add_argument("--chaos-seed", type=int, default=None, help="seed of the fault choices")
    parser.add_argument("--chaos-report", help="JSON counts of injected faults (default: chaos.json by --log-file)")
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        spec = ChaosSpec.parse(args.chaos)
    except ValueError as exc:
        parser.error(str(exc))
    chaos = None
    if spec:
        chaos = Chaos(
            spec, seed=args.chaos_seed, report=args.chaos_report or Path(args.log_file).with_name("chaos.json")
        )

    console = sys.stdout
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)  # the functions' libraries turn some loggers up to INFO
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    log_path = Path(args.log_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    function_log = log_path.open("a", buffering=1)
    # The functions write JSON logs and EMF metrics to stdout, as in Lambda; here they go to a file.
    sys.stdout = _Tee(function_log, console) if args.verbose else function_log  # type: ignore[assignment]
    stack = LocalStack(
        port=args.port,
        host=args.host,
        moto_port=args.moto_port,
        template=args.template,
        params=_pairs(args.param),
        handler_modules=[m.strip() for m in args.handler_modules.split(",") if m.strip()],
        secret=args.secret,
        secret_values=_pairs(args.secret_value),
        stack_name=args.stack_name,
        consumer_concurrency=args.consumer_concurrency,
        out=console,
        chaos=chaos,
    )
    try:
        stack.start()
    except (TemplateError, OSError) as exc:
        console.write(f"local stack failed to start: {exc}\n")
        return 1
    try:
        console.write(stack.banner() + "\n")
        console.write(f"  Function logs   {log_path}\n\n")
        if chaos is not None:
            chaos.write_report()
            console.write(
                f"  Chaos           {spec.text()} (seed {args.chaos_seed}), counts in {chaos.report_path}\n\n"
            )
        console.flush()
        if args.ready_file:
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(json.dumps(stack.info))
            tmp.replace(args.ready_file)
        while not stop.wait(0.5):
            pass
    finally:
        console.write("stopping...\n")
        console.flush()
        stack.stop()
        sys.stdout = console
        function_log.close()
    console.write("stopped.\n")
    return 0


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


if __name__ == "__main__":
    exit_code = main()
    # Everything is stopped, closed and flushed by now. Skip the interpreter's teardown
    # of moto's object graph: it takes seconds, and Ctrl-C should return at once.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
