"""What plain `sam build` produces: the layer and functions ship bytecode Lambda can use as
is, and the AWS SDK pair the functions really import.

Lambda's /opt is read-only, so a layer without .pyc files recompiles every import on
every cold start. `sam build` runs layers/common/Makefile and functions/Makefile
(BuildMethod: makefile), which compile ``unchecked-hash`` pyc files: zip extraction
changes mtimes, which would invalidate timestamp-based ones.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_template

BUILD = ROOT / ".aws-sam" / "build"
SDK = ("boto3", "botocore")
HANDLERS = {
    "IngestFunction": "ingest_handler",
    "ConsumerFunction": "consumer_handler",
    "AdminFunction": "admin_handler",
}


def _pins(requirements: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", requirements.read_text(), flags=re.MULTILINE)
    return {name.lower(): version for name, version in found}


PINS = _pins(ROOT / "layers" / "common" / "requirements.txt")


def _function_env(function: str, **extra: str) -> dict[str, str]:
    """What the template and env.json give the function, with fake credentials: enough to import it."""
    from tests.conftest import EVENTS

    samples = json.loads((EVENTS / "env.json").read_text())
    admin = {k: v for k, v in samples["ConsumerFunction"].items() if k in ("TABLE_NAME", "QUEUE_URL", "DLQ_URL")}
    variables = samples.get(function) or {**admin, "ALERT_TOPIC_ARN": samples["ConsumerFunction"]["ALERT_TOPIC_ARN"]}
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": load_template()["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"],
        "POWERTOOLS_TRACE_DISABLED": "true",
        **variables,
        **extra,
    }


pytestmark = pytest.mark.skipif(
    not BUILD.exists() and not os.environ.get("CI"),
    reason="no .aws-sam/build: run `make build` (CI always builds before testing)",
)


def _pyc_for(source: Path) -> Path:
    tag = sys.implementation.cache_tag  # the tests run on python3.13, the Lambda runtime
    return source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"


@pytest.mark.parametrize(
    "folder",
    [
        "SharedLayer/python/mx_webhooks",
        "SharedLayer/python/aws_lambda_powertools/logging",
        "SharedLayer/python/pydantic",
        "IngestFunction",
        "ConsumerFunction",
    ],
)
def test_every_module_has_unchecked_hash_bytecode(folder):
    sources = sorted((BUILD / folder).rglob("*.py"))
    assert sources, f"nothing built under {folder}"

    missing, checked = [], []
    for source in sources:
        pyc = _pyc_for(source)
        if not pyc.exists():
            missing.append(str(source.relative_to(BUILD)))
            continue
        flags = struct.unpack("<I", pyc.read_bytes()[4:8])[0]
        if flags != 0b01:  # hash-based (bit 0) and not checked against the source (bit 1 clear)
            checked.append(str(source.relative_to(BUILD)))

    assert missing == []
    assert checked == []


def test_the_layer_ships_its_own_dependencies_and_one_pinned_sdk_pair():
    layer = BUILD / "SharedLayer" / "python"

    assert (layer / "aws_lambda_powertools").is_dir()
    assert (layer / "pydantic_core").is_dir()
    shipped = dict(d.name.removesuffix(".dist-info").split("-", 1) for d in layer.glob("*.dist-info"))
    assert shipped["boto3"] == PINS["boto3"] and shipped["botocore"] == PINS["botocore"], shipped


def test_the_layer_pins_the_sdk_pair_the_tests_run_on():
    dev = _pins(ROOT / "requirements-dev.txt")

    assert {name: PINS[name] for name in SDK} == {name: dev[name] for name in SDK}
    assert PINS["boto3"] == PINS["botocore"], "boto3 and botocore are released together, same version"


@pytest.mark.parametrize("function", ["IngestFunction", "ConsumerFunction", "AdminFunction"])
def test_each_function_imports_the_layers_sdk_pair_from_bytecode_in_lambdas_path_order(function, tmp_path):
    # Given the built function and layer on sys.path as Lambda orders it (/var/task, the
    # layer's two folders, then the runtime), with a runtime that has a boto3 of its own
    runtime = tmp_path / "runtime"
    for package in SDK:
        (runtime / package).mkdir(parents=True)
        (runtime / package / "__init__.py").write_text("__version__ = '0.0.0-runtime'\n")
    layer = BUILD / "SharedLayer" / "python"
    path = [BUILD / function, layer / "lib" / "python3.13" / "site-packages", layer, runtime]

    # When a fresh interpreter imports the entry module (no site-packages, nothing written)
    probe = (
        f"import {HANDLERS[function]}, boto3, botocore, json\n"
        "client = boto3.client('sqs', region_name='us-east-1')\n"
        "print(json.dumps({n: [m.__version__, m.__file__] for n, m in (('boto3', boto3), ('botocore', botocore))}"
        " | {'endpoint': client.meta.endpoint_url}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-S", "-B", "-v", "-c", probe],
        env=_function_env(function, PYTHONPATH=os.pathsep.join(map(str, path))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])

    # Then boto3 and botocore are the layer's pinned pair, not the runtime's
    for package in SDK:
        version, file = got[package]
        assert version == PINS[package]
        assert Path(file).is_relative_to(layer), file
    # and the template's empty AWS_ENDPOINT_URL (there for sam local) leaves AWS's endpoint in place
    assert got["endpoint"] == "https://sqs.us-east-1.amazonaws.com"
    # and every module of the build came from its bytecode: none compiled from source at import
    compiled = re.findall(r"^# code object from (/\S+\.py)$", done.stderr, flags=re.MULTILINE)
    from_build = [p for p in compiled if Path(p).is_relative_to(BUILD)]
    assert from_build == []
    assert re.search(rf"^# code object from '{re.escape(str(layer))}/botocore/__pycache__/", done.stderr, re.MULTILINE)


def test_the_built_functions_are_thin_entry_modules():
    assert (BUILD / "IngestFunction" / "ingest_handler.py").exists()
    assert (BUILD / "ConsumerFunction" / "consumer_handler.py").exists()
    assert not (BUILD / "IngestFunction" / "mx_webhooks").exists(), "shared code belongs in the layer"
