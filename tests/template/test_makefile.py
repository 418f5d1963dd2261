"""The Makefile's gates: `make help` lists every target, `.PHONY` names only real targets,
and `make test` lints the template once."""

from __future__ import annotations

import re

from tests.conftest import ROOT

MAKEFILE = (ROOT / "Makefile").read_text()
RULE = re.compile(r"^([a-z][a-z0-9-]*):(?!=)(.*)$")


def rules() -> dict[str, tuple[list[str], list[str]]]:
    """Each named target -> (its prerequisites, its recipe lines)."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in MAKEFILE.splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line.strip())
            continue
        match = RULE.match(line)
        current = None
        if match:
            current = []
            found[match.group(1)] = (match.group(2).split(), current)
    return found


def phony() -> list[str]:
    return [name for line in MAKEFILE.splitlines() if line.startswith(".PHONY:") for name in line.split()[1:]]


def help_lines() -> list[str]:
    return re.findall(r"^## ([a-z][a-z0-9-]*): \S", MAKEFILE, flags=re.MULTILINE)


def test_phony_names_only_targets_that_exist():
    assert set(phony()) - set(rules()) == set()


def test_make_help_lists_every_target_once_with_one_line():
    # Given the `## target: description` lines `make help` prints
    listed = help_lines()

    # Then every phony target has exactly one, and each names a target
    assert sorted(listed) == sorted(set(listed)), "a target described twice"
    assert set(phony()) == set(listed)
    # and no description runs on to a second `##` line
    assert not re.search(r"^## [^:]*$", MAKEFILE, flags=re.MULTILINE)


def test_make_test_runs_cfn_lint_once():
    targets = rules()
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen or name not in targets:
            return
        seen.add(name)
        for prerequisite in targets[name][0]:
            walk(prerequisite)

    walk("test")
    lints = [
        (name, line)
        for name in sorted(seen)
        for line in targets[name][1]
        if "cfn-lint" in line or "validate --lint" in line
    ]
    assert len(lints) == 1, lints
