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
   Gateway HTTP API payload v2 events (``devtools.local_stack.http_front``); IAM-authorised
   routes get an IAM caller context, but no SigV4 check is made locally;
5. feeds each SQS event source mapping's function from its queue as Lambda does
   (``devtools.local_stack.sqs_source``): batch size, batching window, the queue's visibility
   timeout, ``ReportBatchItemFailures``, and the queue's own redrive to the DLQ.

It prints the URL, the local signing secret and the command that sends a test
event, then one line per webhook request and one per consumed record. The
functions' own JSON logs and metrics go to ``.local-stack/functions-<port>.log``, rewritten each run (printed
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

``--chaos`` injects faults (``devtools.local_stack.chaos``): DynamoDB writes applied whose reply is
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
    with LocalStackProcess(params={...}, handler_modules=["tests.e2e.e2e_handlers"]) as stack:
        stack.url, stack.outputs, stack.endpoint_url, stack.client("sqs")
        stack.log_text()                # the banner and one line per request / consumed record
        stack.function_log_text()       # the functions' JSON logs and EMF metrics
        stack.stop(signum=signal.SIGTERM)   # default SIGINT; returns the exit code (0 = clean)

``stack.info`` is the same dict in both: ``url``, ``webhook_url``, ``endpoint_url``,
``region``, ``secret``, ``stack_name``, ``outputs``, ``parameters``, ``routes``.


The package, by job: ``stack`` (the lifecycle: moto, the stack, the functions, the
pollers), ``resources`` (what moto's CloudFormation skips and ``Fn::GetAtt``, as
tables), ``wiring`` (routes and throttles), ``console`` and ``logtap`` (the banner and
the delivery lines), ``process`` (``LocalStackProcess``), ``cli`` (the command line);
and the emulators it drives, each usable alone: ``template`` (SAM to CloudFormation,
``Resolver``), ``lambda_runtime`` (a function in this process, with its timeout),
``http_front`` (API Gateway HTTP API, throttles), ``sqs_source`` (the SQS event source
mapping), ``chaos`` (fault injection).
"""

from devtools.local_stack.cli import main
from devtools.local_stack.process import LocalStackProcess
from devtools.local_stack.resources import REGION, for_moto
from devtools.local_stack.stack import DEFAULT_STACK_NAME, LocalStack
from devtools.local_stack.template import ROOT, TemplateError

__all__ = [
    "DEFAULT_STACK_NAME",
    "REGION",
    "ROOT",
    "LocalStack",
    "LocalStackProcess",
    "TemplateError",
    "for_moto",
    "main",
]
