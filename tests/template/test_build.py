"""What `make build` produces: the layer and functions ship bytecode Lambda can use as is.

Lambda's /opt is read-only, so a layer without .pyc files recompiles every import on
every cold start. `make build` compiles with ``unchecked-hash`` pyc files: zip
extraction changes mtimes, which would invalidate timestamp-based ones.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUILD = ROOT / ".aws-sam" / "build"

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


def test_the_layer_ships_its_own_dependencies_but_not_boto3():
    layer = BUILD / "SharedLayer" / "python"

    assert (layer / "aws_lambda_powertools").is_dir()
    assert (layer / "pydantic_core").is_dir()
    assert not (layer / "boto3").exists(), "boto3 comes with the Lambda runtime; shipping it bloats the layer"


def test_the_built_functions_are_thin_entry_modules():
    assert (BUILD / "IngestFunction" / "ingest_handler.py").exists()
    assert (BUILD / "ConsumerFunction" / "consumer_handler.py").exists()
    assert not (BUILD / "IngestFunction" / "mx_webhooks").exists(), "shared code belongs in the layer"
