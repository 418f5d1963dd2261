"""The README's commands, run as a new user would: from a fresh clone, as written.

Every fenced shell command of the README's quick start, local use, admin (the two
questions, Admin CLI, Admin API) and ``sam local invoke`` sections is run in order
with ``bash`` in a ``git clone`` of this repository, and each must exit 0 and print
the documented output shape:

- a ``console`` block documents the output of each ``$ command``: every documented
  line must match a line of what it printed, with numbers, hex ids and ``...``
  generalised (the shape, not the values); an untagged block in the local-use section
  is the running ``make run``'s own output;
- a ``bash`` block documents its commands in comments only: ``EXPECT`` below holds
  what each must print. A new command without an entry fails the test, so the README
  cannot grow a command nobody ran.

``make run`` starts in the background and stays up for the commands after it (a
``make run`` with other options starts a second stack, on a second port, checked and
stopped). Placeholders are filled from the running stack: ``<event id>`` (the first
event ``make send`` created), ``<EventsTableName>``, ``<moto port>``; ``PORT`` is a
free port, exported as the README says to, and the Admin API's literal ``:3000`` is
that port. The "two questions" commands target AWS as written: they run with
``AWS_ENDPOINT_URL`` exported to the local stack's moto, as the README offers.

Not run (each needs something this test does not have): ``make test`` (the suite that
runs this test), ``sam local ...`` and the ``make send`` to its ``start-api`` (Docker:
``tests/samlocal`` runs exactly these commands), ``make aws`` and ``aws`` when no AWS CLI
is on PATH, ``make build`` when the checkout has no ``.venv-sam``. The sam-local
section's ``export PATH=...`` is applied to the commands after it.

Nothing is installed: the clone's ``.venv`` and ``.venv-sam`` are symlinks to this
checkout's, its requirement files are dated before ``.venv/.installed`` so make sees
the venv as up to date, and the two symlinks are listed in the clone's own
``.git/info/exclude`` (``.gitignore``'s ``.venv/`` matches directories, not links). At
the end ``git status --porcelain`` in the clone must be empty.

About a minute: ``make build`` (sam build, 30-40 s) needs no stack, so it starts at
once in the background and its turn only waits for it; the rest is two stack starts
(~7 s each) and ~20 commands of 0.5-6 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = (ROOT / "README.md").read_text()
COMMAND_TIMEOUT_S = 120


# -- the README's blocks ----------------------------------------------------------------------


@dataclass
class Block:
    section: str
    lang: str  # "bash", "console" or "" (output shown without a command)
    text: str


def _between(text: str, start: str, end_pattern: str) -> str:
    begin = text.index(start)
    found = re.compile(end_pattern, re.MULTILINE).search(text, begin + len(start))
    return text[begin : found.start() if found else len(text)]


def readme_sections(readme: str = README) -> list[tuple[str, str]]:
    operate = _between(readme, "<!-- section:operate -->", r"<!-- /section:operate -->")
    return [
        ("quick start", _between(readme, "## Quick start", r"^<!-- section:|^## ")),
        ("local use", _between(readme, "<!-- section:local -->", r"<!-- /section:local -->")),
        ("sam local", _between(readme, "<!-- section:sam-local -->", r"<!-- /section:sam-local -->")),
        ("two questions", _between(operate, "### The two questions", r"^### ")),
        ("admin CLI", _between(operate, "### Admin CLI", r"^### ")),
        ("admin API", _between(operate, "### Admin API", r"^### ")),
    ]


FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def readme_blocks(readme: str = README) -> list[Block]:
    blocks = []
    for name, text in readme_sections(readme):
        for match in FENCE.finditer(text):
            indent, lang, body = match.groups()
            if lang in ("bash", "sh", "console", ""):
                body = "\n".join(line.removeprefix(indent) for line in body.splitlines())
                blocks.append(Block(name, lang, body))
    return blocks


def bash_commands(text: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comment-only lines dropped."""
    commands, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending:
            line = line.lstrip()
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines with the output lines documented after each."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def without_comment(command: str) -> str:
    return re.sub(r"\s+#\s.*$", "", command).strip()


def shape(line: str) -> re.Pattern[str] | None:
    """A documented output line as a pattern: numbers, hex ids and ``...`` stand for any value."""
    if not line.strip() or line.strip() == "...":
        return None

    def token(text: str) -> str:
        parts = []
        for hexa, number, dots, other in re.findall(r"([0-9a-f]{6,})|(\d+)|(\.\.\.)|(.)", text):
            parts.append("[0-9a-f]+" if hexa else r"\d+" if number else r"\S*" if dots else re.escape(other))
        return "".join(parts)

    return re.compile(r"\s+".join(token(t) for t in line.split()))


def assert_shapes(documented: list[str], output: str, what: str) -> None:
    lines = output.splitlines()
    for doc in documented:
        pattern = shape(doc)
        if pattern and not any(pattern.search(line) for line in lines):
            raise AssertionError(f"{what}: no output line has the documented shape of\n  {doc}\noutput:\n{output}")


# -- what each bash command must print (exit 0 always) ------------------------------------------

# command (comment stripped) -> a pattern its stdout must contain, or a check function
Check = Callable[[str, "Session"], None]
EXPECT: dict[str, str | Check] = {
    "make send TYPE=all FORMAT=generic": r"7 requests to \S+: 202 x7",
    "make send ARGS=--duplicate": r"2 requests to \S+: 202 x2",
    "make send ARGS=--wrong-secret": r"(?m)^401\s",
    'make send ARGS="--burst 200 --concurrency 20"': r"200 requests to \S+: 202 x200",
    'make admin ARGS="list --local"': r"FIRST SEEN \(UTC\)(.|\n)*\n\d+ event\(s\)",
    'make admin ARGS="show <event id> --local"': r"(?m)^mx_[0-9a-f]{40}\n  status\s+COMPLETED",
    'make aws ARGS="dynamodb list-tables"': r'"TableNames"(.|\n)*EventsTable',
    'make aws ARGS="dynamodb scan --table-name <EventsTableName>"': r'"Items"(.|\n)*"Count": \d+',
    "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing aws --region us-east-1 "
    "--endpoint-url http://127.0.0.1:<moto port> dynamodb scan --table-name <EventsTableName>": r'"Items"',
    'make admin ARGS="history workorder 90001"': r"OCCURRED \(UTC\)(.|\n)*\n\d+ event\(s\) of workorder 90001",
    'make admin ARGS="list --type workorder.created --since 2026-09-14T09:55:00Z"': r"\n\d+ event\(s\)",
    'make admin ARGS="show <event id>"': r"(?m)^mx_[0-9a-f]{40}\n  status\s+COMPLETED",
    'make admin ARGS="retry-failed --since 2026-09-13T18:00:00Z --dry-run"': r"would re-enqueue \d+ event\(s\)",
    'make admin ARGS="retry-failed --since 2026-09-13T18:00:00Z"': r"re-enqueued \d+ event\(s\)",
    'make admin ARGS="dlq peek"': r"~\d+ message\(s\) in the DLQ",
    'make admin ARGS="dlq redrive"': r"moved \d+ message\(s\) back to the events queue",
    "curl 'http://127.0.0.1:3000/admin/webhooks?status=FAILED'": lambda out, _: _json_with(out, "items"),
    "make build": lambda out, s: _built(s),
    'export PATH="$PWD/.venv-sam/bin:$PATH"': lambda out, s: _export_sam_path(s),
}
NOT_RUN = {
    "make test": "the whole suite, which runs this test; CI runs it",
    "sam local": "needs Docker: tests/samlocal runs it",
    "make send PORT=3001": "needs the sam local start-api above (Docker): tests/samlocal runs it",
}


def _json_with(out: str, key: str) -> None:
    assert key in json.loads(out), out


def _built(session: Session) -> None:
    assert (session.clone / ".aws-sam" / "build" / "SharedLayer").is_dir()
    assert list((session.clone / ".aws-sam" / "build").rglob("*.pyc")), "sam build shipped no bytecode"


def _export_sam_path(session: Session) -> None:
    """The README's ``export PATH=...``: ``sam`` (and python3.13) on PATH for the commands after it."""
    assert (session.clone / ".venv-sam" / "bin" / "sam").exists()
    session.env["PATH"] = f"{session.clone}/.venv-sam/bin:{session.env['PATH']}"


# -- running them -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    command: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace").replace(f" PORT={self.port}", "")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise
        assert "stopped." in self.output(), self.output()[-2000:]


@dataclass
class Session:
    clone: Path
    env: dict[str, str]
    port: int
    stacks: list[Stack] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    early: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = field(default_factory=dict)

    @property
    def main(self) -> Stack:
        return self.stacks[0]

    def info(self, port: int | None = None) -> dict[str, object]:
        ready = self.clone / ".local-stack" / f"stack-{port or self.port}.json"
        return dict(json.loads(ready.read_text()))

    def fill(self, command: str) -> str:
        if "<" not in command and ":3000" not in command:
            return command
        info = self.info()
        outputs = info["outputs"]
        assert isinstance(outputs, dict)
        values = {
            "<event id>": self.event_ids[0] if self.event_ids else "<no event sent yet>",
            "<EventsTableName>": str(outputs["EventsTableName"]),
            "<moto port>": str(info["endpoint_url"]).rsplit(":", 1)[1],
            "127.0.0.1:3000": f"127.0.0.1:{self.port}",
        }
        for placeholder, value in values.items():
            command = command.replace(placeholder, value)
        assert not re.search(r"<[a-zA-Z ]+>", command), f"unknown placeholder in {command}"
        return command

    def start_early(self, command: str) -> None:
        """Start a slow command now, in the background; ``run`` waits for it when its turn comes."""
        log = self.clone.parent / "early.log"
        process = subprocess.Popen(  # noqa: S602 - the README's command, as written
            command,
            shell=True,
            executable="/bin/bash",
            cwd=self.clone,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.early[command] = (process, log, time.monotonic())

    def start_stack(self, command: str) -> Stack:
        started = time.monotonic()
        port = self.port if not self.stacks else _free_port()
        log = self.clone.parent / f"make-run-{port}.log"
        process = subprocess.Popen(  # noqa: S602 - the README's command, as written
            command,
            shell=True,
            executable="/bin/bash",
            cwd=self.clone,
            env={**self.env, "PORT": str(port)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack = Stack(command, port, process, log)
        self.stacks.append(stack)
        ready = self.clone / ".local-stack" / f"stack-{port}.json"
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, f"{command} exited {process.returncode}:\n{stack.output()}"
            assert time.monotonic() < deadline, f"{command}: not ready in 120 s:\n{stack.output()}"
            time.sleep(0.2)
        while "Function logs" not in stack.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.ran.append(f"{time.monotonic() - started:5.1f} s  {command}  (until ready)")
        return stack

    def run(self, command: str, extra_env: dict[str, str] | None = None) -> str:
        if command in self.early:
            process, log, started = self.early.pop(command)
            code = process.wait(timeout=COMMAND_TIMEOUT_S)
            self.ran.append(f"{time.monotonic() - started:5.1f} s  {command}  (started early, in the background)")
            assert code == 0, f"{command}\nexited {code}\n{log.read_text(errors='replace')}"
            return log.read_text(errors="replace")
        filled = self.fill(command)
        started = time.monotonic()
        done = subprocess.run(  # noqa: S602 - the README's command, as written
            filled,
            shell=True,
            executable="/bin/bash",
            cwd=self.clone,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        self.ran.append(f"{time.monotonic() - started:5.1f} s  {command}")
        assert done.returncode == 0, f"{filled}\nexited {done.returncode}\n{done.stdout}\n{done.stderr}"
        self.event_ids += re.findall(r'"eventId":"(mx_[0-9a-f]{40})"', done.stdout)
        return done.stdout

    def not_run(self, command: str) -> str | None:
        reason = next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)
        if reason is None and re.match(r"(make aws|(\S+=\S+ )*aws )", command) and not shutil.which("aws"):
            reason = "no AWS CLI on PATH"
        if reason is None and command.startswith("make build") and not (ROOT / ".venv-sam").is_dir():
            reason = "no .venv-sam in this checkout to reuse (make install-sam)"
        if reason:
            self.skipped.append(f"{command}  ({reason})")
        return reason


def _clean_env(port: int) -> dict[str, str]:
    """This process's environment less what the tests and an outer make added; PORT set."""
    dropped = ("AWS_", "POWERTOOLS_", "MAKE", "MFLAGS", "PYTHONPATH", "VIRTUAL_ENV", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**env, "PORT": str(port)}


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    installed = (ROOT / ".venv" / ".installed").stat().st_mtime
    for venv in (".venv", ".venv-sam"):
        if (ROOT / venv).is_dir():
            (clone / venv).symlink_to(ROOT / venv)
    for requirements in ("requirements-dev.txt", "layers/common/requirements.txt"):
        os.utime(clone / requirements, (installed - 60, installed - 60))
    with (clone / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("\n.venv\n.venv-sam\n")
    port = _free_port()
    session = Session(clone, _clean_env(port), port)
    try:
        yield session
    finally:
        for stack in reversed(session.stacks):
            if stack.process.poll() is None:
                os.killpg(stack.process.pid, signal.SIGKILL)
        for process, _, _ in session.early.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="needs the checkout's .venv (make install)")
def test_every_readme_command_works_from_a_fresh_clone(session: Session):
    readme = (session.clone / "README.md").read_text()  # the clone's: what a new user reads
    blocks = readme_blocks(readme)
    assert {b.section for b in blocks} == {name for name, _ in readme_sections(readme)}, "a section lost its commands"
    started = time.monotonic()
    # `make build` (sam build, ~30 s) needs no stack: start it now, alongside the stack's commands
    if any("make build" in bash_commands(b.text) for b in blocks if b.lang == "bash") and not session.not_run(
        "make build"
    ):
        session.start_early("make build")

    stack_lines: dict[str, list[str]] = {}  # per section: make run's own lines, checked at its end
    for index, block in enumerate(blocks):
        if block.lang == "":
            stack_lines.setdefault(block.section, []).extend(x for x in block.text.splitlines() if x.strip())
        else:
            _run_block(session, block)
        last_of_section = index + 1 == len(blocks) or blocks[index + 1].section != block.section
        if last_of_section and block.section in stack_lines:
            _check_stack_lines(session, stack_lines.pop(block.section))

    # stdout of `make admin ... --json` is the answer alone (the Admin CLI section says so)
    json.loads(session.run('make admin ARGS="list --local --json"'))
    session.main.stop()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=session.clone, capture_output=True, text=True, check=True
    ).stdout
    assert status == "", f"the README's commands left changes in a fresh clone:\n{status}"
    print(f"\nREADME commands: {len(session.ran)} run in {time.monotonic() - started:.0f} s")
    print("\n".join(session.ran))
    print("not run:\n  " + "\n  ".join(session.skipped))
    if session.gaps:
        print("known gaps in make run's lines:\n  " + "\n  ".join(sorted(set(session.gaps))))
    assert all(any(s.startswith(p) for s in session.skipped) for p in NOT_RUN), "NOT_RUN lists a command gone"


def _run_block(session: Session, block: Block) -> None:
    steps = console_steps(block.text) if block.lang == "console" else [(c, []) for c in bash_commands(block.text)]
    for command, documented in steps:
        bare = without_comment(command)
        if session.not_run(bare):
            continue
        if bare.startswith("make run"):
            same = [s for s in session.stacks if s.command == bare]
            stack = same[0] if same else session.start_stack(bare)
            assert_shapes(documented, stack.output(), bare)
            if stack is not session.main:  # other options: its own port; check them and stop it
                _check_options(session, stack)
                stack.stop()
            continue
        extra = {}
        if block.section == "two questions":  # as written they target AWS; here the local stack
            extra["AWS_ENDPOINT_URL"] = str(session.info()["endpoint_url"])
        output = session.run(bare, extra)
        if block.lang == "console":
            assert_shapes(documented, output, bare)
            continue
        expected = EXPECT.get(bare)
        assert expected is not None, f"README command with no expectation in EXPECT: {bare}"
        if isinstance(expected, str):
            assert re.search(expected, output), f"{bare}: expected /{expected}/ in\n{output}"
        else:
            expected(output, session)


# Words of make run's documented lines it does not print today, each with why. Such a word
# is optional in the shape (the rest of the line still has to match); remove the entry
# when the stack prints it again.
KNOWN_GAPS: dict[str, str] = {}


def _check_stack_lines(session: Session, documented: list[str]) -> None:
    """The running stack's own lines for what the section sent (the consumer batches for a second)."""
    deadline = time.monotonic() + 15
    for doc in documented:
        pattern = shape(doc)
        assert pattern is not None
        if " http " in f" {doc} ":
            for word, why in KNOWN_GAPS.items():
                if word in doc.split():
                    session.gaps.append(f"{word}: {why}")
                    pattern = re.compile(
                        pattern.pattern.replace(re.escape(word) + r"\s+", f"(?:{re.escape(word)}\\s+)?")
                    )
        while not any(pattern.search(line) for line in session.main.output().splitlines()):
            assert time.monotonic() < deadline, (
                f"make run's output has no line shaped like\n  {doc}\n{session.main.output()}"
            )
            time.sleep(0.5)


def _check_options(session: Session, stack: Stack) -> None:
    """``make run ARGS="--param NAME=VALUE ..."`` reached the stack: its parameters say so."""
    parameters = session.info(stack.port)["parameters"]
    assert isinstance(parameters, dict)
    for name, value in re.findall(r"--param (\w+)=(\S+?)[\"\s]", stack.command + " "):
        assert parameters[name] == value, (name, parameters.get(name))


# -- the helpers above, and README facts that need no stack ---------------------------------------


def test_shape_generalises_values_not_words():
    pattern = shape('202     41 ms  workorder.created  {"received":true,"eventId":"mx_04ba9965b0..."}')

    assert pattern is not None
    assert pattern.search('202  7 ms  workorder.created  {"received":true,"eventId":"mx_deadbeef1234"}')
    assert not pattern.search('202  7 ms  request.updated  {"received":true,"eventId":"mx_deadbeef1234"}')
    assert shape("  ...") is None


def test_bash_blocks_are_split_into_commands():
    text = "# a comment\nmake a   # says a\naws --x \\\n  --y z\n\nmake b\n"

    assert bash_commands(text) == ["make a   # says a", "aws --x --y z", "make b"]
    assert without_comment("make a   # says a") == "make a"


def test_every_readme_section_a_code_comment_names_exists():
    def plain(text: str) -> str:
        return text.replace("`", "").strip().lower()

    headings = {plain(m) for m in re.findall(r"^#+ (.+)$", README, flags=re.MULTILINE)}
    named = []
    for folder in ("devtools", "layers", "functions"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            named += [(path.name, n) for n in re.findall(r'README(?:\'s)?,? "([^"]+)"', path.read_text())]
    assert named, "the pattern finds no reference at all"
    for source, name in named:
        assert plain(name) in headings, f"{source} points to README section {name!r}, which does not exist"
