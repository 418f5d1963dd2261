"""Template parameters: each described, grouped for the console, documented in the README.

The README's "Configuration reference" is written by hand (meaning, default, when to
change it); these tests keep it from drifting from template.yaml, and keep the
template's own layout (parameter groups, the lease against the consumer's timeout).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, load_template

TEMPLATE = load_template()
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
README = (ROOT / "README.md").read_text()


def reference_rows() -> dict[str, list[str]]:
    """The README's configuration reference: parameter -> its row's cells."""
    section = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([A-Za-z0-9]+)` \|", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_parameter_has_a_description(name):
    assert len(str(PARAMETERS[name].get("Description", "")).split()) >= 5, name


def test_every_parameter_is_in_exactly_one_console_group():
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(set(grouped)), "a parameter in two groups"
    assert set(grouped) == set(PARAMETERS)


def test_the_readme_reference_lists_every_parameter_with_its_default():
    rows = reference_rows()
    assert set(rows) == set(PARAMETERS), {
        "missing": set(PARAMETERS) - set(rows),
        "unknown": set(rows) - set(PARAMETERS),
    }
    for name, spec in PARAMETERS.items():
        default = str(spec["Default"])
        shown = rows[name][1]
        assert shown == (f"`{default}`" if default else "(empty)"), (name, shown, default)
        assert all(rows[name][2:4]), f"{name}: meaning and when to change it"


def test_the_readme_reference_lists_parameters_in_the_template_order():
    assert list(reference_rows()) == list(PARAMETERS)


def test_the_claim_lease_outlasts_the_consumer_and_ends_before_the_queue_redelivers():
    # A lease shorter than the timeout lets a second invocation take over a live one;
    # one longer than the visibility timeout makes the first redelivery after a crash
    # find the claim still held and spend a receive waiting.
    timeout = TEMPLATE["Resources"]["ConsumerFunction"]["Properties"]["Timeout"]
    visibility = TEMPLATE["Resources"]["EventsQueue"]["Properties"]["VisibilityTimeout"]
    lease = PARAMETERS["ClaimLeaseSeconds"]
    assert timeout < lease["MinValue"] <= lease["Default"] <= lease["MaxValue"] < visibility
    env = TEMPLATE["Resources"]["ConsumerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["LEASE_SECONDS"] == {"Ref": "ClaimLeaseSeconds"}


WHERE_PATH = re.compile(r"`((?:layers|functions|devtools|tests|docs|events)/[^`\s]*|template\.yaml|\.checkov\.yaml)`")


def test_every_path_in_where_things_live_exists():
    section = README.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    paths = WHERE_PATH.findall(section)
    assert len(paths) > 20
    for path in paths:
        if "*" in path:
            assert list(ROOT.glob(path)), path
            continue
        target = ROOT / path.rstrip("/")
        # a module may be a file or a package (devtools/local_stack)
        assert target.exists() or Path(f"{target}.py").exists(), path
