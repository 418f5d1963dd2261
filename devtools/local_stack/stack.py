"""The template's stack on moto, its HTTP API and its queue consumers, in this process.

See the package's docstring (``devtools.local_stack``) for what it reproduces and how.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import struct
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from devtools.local_stack import resources, wiring
from devtools.local_stack.alerts import AlertWatcher
from devtools.local_stack.chaos import Chaos
from devtools.local_stack.console import Console, banner, park_limit
from devtools.local_stack.http_front import HttpFront, Route, Throttle
from devtools.local_stack.lambda_runtime import LocalFunction, stack_environment
from devtools.local_stack.logtap import LogTap
from devtools.local_stack.moto_server import MotoProcess
from devtools.local_stack.resources import LOCAL_API_ID, REGION, env_text, for_moto, zip_folder
from devtools.local_stack.sqs_source import SqsEventSource
from devtools.local_stack.template import ACCOUNT_ID, ROOT, Resolver, TemplateError, parameter_values, translate
from devtools.sample_events import TEN_YEARS
from devtools.samples import LOCAL_SECRET

DEFAULT_STACK_NAME = "maintainx-webhooks-local"
# The name a `sam local` container reaches this machine by: Docker Desktop defines it; on
# Linux, `--add-host host.docker.internal:host-gateway` maps it to Docker's bridge.
SAM_LOCAL_HOST = "host.docker.internal"
CODE_BUCKET = "local-stack-code"
log = logging.getLogger("devtools.local_stack")


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
        self.chaos = chaos  # fault injection (devtools.local_stack.chaos), off when None
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
        self.bridge_address: str | None = None  # moto's second address, for sam local (docker0)
        self._exit = ExitStack()
        self._tap = LogTap()
        self.console = Console(self.out, self._tap)
        self._tap.on_circuit = self.console.print_circuit
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
        # moto in a process of its own (moto_server.py), on 127.0.0.1 and on Docker's bridge address
        # (same port, same state) for `sam local`: its containers reach this machine only through the
        # bridge (`--add-host host.docker.internal:host-gateway`; the SAM CLI ignores `--docker-network
        # host`, aws-sam-cli#4236), which only this machine's containers can reach. No bridge address
        # without Docker, or with Docker Desktop (its host.docker.internal reaches 127.0.0.1 itself).
        bridge = docker_bridge_address() if self.host in ("127.0.0.1", "localhost") else None
        self._moto = MotoProcess(self.host, self.moto_port, extra_hosts=(bridge,) if bridge else ())
        self._moto.start()
        self._exit.callback(self._moto.stop)
        for problem in self._moto.problems:  # the bridge is down or the port taken there: sam local cannot reach us
            log.warning("%s", problem)
        self.bridge_address = bridge if bridge in self._moto.bound else None
        # start from nothing, leave nothing behind (moto's state lives as long as its process)
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
            on_exchange=self.console.print_exchange,
            throttles=self.throttles,
        )
        self._front.start()
        self._exit.callback(self._front.stop)
        self._resolve_outputs()
        self._watch_alerts()
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
            "alerts_queue_url": self.alerts.queue_url if self.alerts else None,
            "docker_bridge": self.bridge_address,
        }

    def _watch_alerts(self) -> None:
        """Print what AlertsTopic would send (``devtools.local_stack.alerts``)."""
        self.alerts: AlertWatcher | None = None
        topic = self.outputs.get("AlertsTopicArn")
        if not topic:
            return
        self.alerts = AlertWatcher(self.client("sqs"), self.client("sns"), str(topic), self.console.line)
        self.alerts.start()
        self._exit.callback(self.alerts.stop)

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
            s3.put_object(Bucket=CODE_BUCKET, Key=asset.key, Body=zip_folder(asset.path))
        for resource in cfn["Resources"].values():
            if resource["Type"] == "AWS::Lambda::EventSourceMapping":
                resource["Properties"]["Enabled"] = False  # else moto invokes the function in Docker

        cloudformation = self.client("cloudformation")
        cloudformation.create_stack(
            StackName=self.stack_name,
            TemplateBody=json.dumps(for_moto(cfn)),
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
        """One resource moto skipped, by the table of its type (``resources.CREATORS``)."""
        resource = self.resolver.resources()[logical_id]
        kind = resource["Type"]
        create = resources.creator(kind)
        if create is None:
            self.resolver.physical_ids[logical_id] = f"not-created-locally-{logical_id}"
            self.skipped.append(f"{logical_id} ({kind})")
            return
        self.resolver.physical_ids[logical_id] = create(self, logical_id, resource.get("Properties") or {})

    def signing_secrets(self) -> set[str]:
        """Secrets a function reads its webhook signing secrets from (``WEBHOOK_SECRET_ARN``)."""
        found = set()
        for resource in self._translated.cfn["Resources"].values():
            variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
            ref = variables.get("WEBHOOK_SECRET_ARN")
            if isinstance(ref, dict) and "Ref" in ref:
                found.add(ref["Ref"])
        return found

    def _attribute(self, kind: str, physical_id: str, attribute: str) -> Any:
        """``Fn::GetAtt``, by the table of the resource's type (``resources.ATTRIBUTES``)."""
        return resources.attribute(self, kind, physical_id, attribute)

    @property
    def resolver(self) -> Resolver:
        assert self._resolver is not None, "the stack is not created yet"
        return self._resolver

    # -- functions, routes, event sources ---------------------------------------------------
    def _load_functions(self) -> None:
        translated = self._translated
        for path in [*translated.layer_dirs, *translated.function_dirs.values(), ROOT]:
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
        for logical_id, code_dir in translated.function_dirs.items():
            function = self._function(logical_id, code_dir)
            self.functions[logical_id] = function
            service = function.environment.get("POWERTOOLS_SERVICE_NAME")
            if service and self._tap not in logging.getLogger(service).handlers:
                logging.getLogger(service).addHandler(self._tap)
                self._exit.callback(logging.getLogger(service).removeHandler, self._tap)
        resolver = self.resolver
        self.routes = wiring.routes(self._translated.sam, self.functions)
        self.throttles = wiring.throttles(resolver)
        self.event_sources = self._event_sources()

    def _function(self, logical_id: str, code_dir: Path) -> LocalFunction:
        """One function of the template, loaded with the environment the template gives it."""
        resolver = self.resolver
        props = resolver.resources()[logical_id]["Properties"]
        variables = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
        name = resolver.physical_ids[logical_id]
        timeout = int(resolver.resolve(props.get("Timeout", 3)))
        memory = int(resolver.resolve(props.get("MemorySize", 128)))
        env = {str(k): env_text(v) for k, v in variables.items()}
        if not env.get("AWS_ENDPOINT_URL"):  # declared empty for `sam local`; here the stack's moto applies
            env.pop("AWS_ENDPOINT_URL", None)
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
        try:
            function.load()
        except Exception as exc:  # a bad handler module: one line, not the import's traceback
            modules = env.get("HANDLER_MODULES", "")
            raise TemplateError(
                f"{logical_id}: {type(exc).__name__}: {exc}" + (f" (HANDLER_MODULES={modules})" if modules else "")
            ) from exc
        return function

    def sam_local_env(self) -> dict[str, dict[str, str]]:
        """``sam local invoke/start-api --env-vars`` values that point the functions at this stack.

        Per function, every variable the template declares (``--env-vars`` sets no other),
        valued as this stack gives it, with ``AWS_ENDPOINT_URL`` = this stack's moto as a
        container reaches it (``host.docker.internal``, which ``--add-host
        host.docker.internal:host-gateway`` maps to Docker's bridge) and ``SIGNATURE_TOLERANCE_SECONDS``
        long enough for the committed samples of ``events/ingest`` (signed once, in 2026).
        Not settable this way: credentials and region, which the SAM CLI takes from the
        caller's AWS configuration (none: fake keys and us-east-1, this stack's region).
        """
        resolver = self.resolver
        result: dict[str, dict[str, str]] = {}
        for logical_id in self.functions:
            props = resolver.resources()[logical_id]["Properties"]
            declared = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
            env = {str(k): env_text(v) for k, v in declared.items()}
            if "AWS_ENDPOINT_URL" in env:
                env["AWS_ENDPOINT_URL"] = f"http://{SAM_LOCAL_HOST}:{self._moto.get_host_and_port()[1]}"
            if "SIGNATURE_TOLERANCE_SECONDS" in env:
                env["SIGNATURE_TOLERANCE_SECONDS"] = str(TEN_YEARS)
            result[logical_id] = env
        return result

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
                self.console.redrive_limits[arn] = int(policy["maxReceiveCount"])
            limit = park_limit(function.environment)
            if limit:
                self.console.attempt_limits[arn] = limit
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
                    on_batch=functools.partial(self.console.print_batch, arn),
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

    def banner(self) -> str:
        return banner(self, self.params)


def docker_bridge_address(interface: str = "docker0") -> str | None:
    """The IPv4 address of Docker's default bridge on this machine (Linux), else None."""
    try:
        import fcntl
    except ImportError:  # not Linux
        return None
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


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
