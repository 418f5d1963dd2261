"""The pipeline as a state machine: random interleavings of workers, crashes, lost replies and operators.

A hypothesis ``RuleBasedStateMachine`` drives the real ``Ingestor``, ``Consumer``,
``EventStore`` and ``Admin`` (``tests/sim``) through random schedules and checks three
invariants after every step; ``make soak`` runs the same simulation with a seeded
random driver for as long as asked (``devtools/soak.py``).

How it is built (``tests/sim``):

- **One virtual clock.** ``time`` as seen by ``mx_webhooks.{store,consumer,admin,ingest,
  queues}`` is a stand-in reading it (``perf_counter``/``monotonic`` too; ``sleep`` moves
  it); ``Admin`` gets ``clock=``. Leases, backoffs, visibility timeouts and Lambda's
  deadlines move only when a step moves the clock (``tick``).
- **A cooperative scheduler over real threads.** Every consumer invocation and admin
  command is an actor: a thread running the real code that pauses before each external
  call (each DynamoDB attempt, each SQS or SNS call, each handler). A step resumes one
  actor until its next call, so any interleaving of several workers and an operator is
  a sequence of steps, replayable exactly. The consumer runs its entity groups one after
  another (``CONSUMER_MAX_WORKERS=1``), an event's handlers go through the consumer's
  handler pool run inline (submit, checkpoint one that succeeds while others remain,
  finish: the code path of Lambda, in submission order), and the admin's bulk retry
  inline: concurrency comes from the actors, one thread runs at a time.
- **Faults are part of the step.** The step that resumes an actor chooses how the call
  it is paused at goes: ``LOST`` (applied, reply lost, botocore retries the identical
  call: the proxy makes it again and returns the second answer), ``LOST_FINAL`` (applied,
  reply lost, the SDK gives up: raises ``ConnectionClosedError`` or a 500), ``FAIL``
  (refused, not applied), ``KILL`` (the invocation dies there: a ``BaseException`` the
  code cannot catch, so nothing after it runs and its claim stays until the lease ends).
  For a handler the same choice means a transient failure, a ``PermanentError`` (where
  the handler raises those; elsewhere a deferral: its integration's circuit breaker is
  open, the event WAITING and the try not counted) or a 300 KB error text. ``tick`` past an invocation's 60 s
  stops it as Lambda does.
- **DynamoDB is moto** (the table built from template.yaml: conditional writes,
  ``ReturnValuesOnConditionCheckFailure``, the GSIs), behind that proxy. One moto bug is
  corrected for the run: it counted a replaced attribute's old and new values against
  the 400 KB item limit and left a failed update half applied. Any write that fails but
  changes the item is reported as a stand-in artefact.
- **SQS and SNS are in memory** (``tests/sim/aws.py``): visibility timeouts, receive
  counts, the redrive to the DLQ on the receive after ``maxReceiveCount`` (5 here; the
  consumer gives up after 3 attempts where it has that setting), at-least-once delivery
  (``redeliver`` hands an in-flight message to a second invocation), 256 KiB limits with
  SQS's error codes; a delete with any receipt handle a message was given deletes it
  (the stricter reading of SQS's documentation). SNS captures alerts and refuses
  messages over 256 KiB; it is not failed on purpose (the code logs a failed publish and
  goes on, by design). Lambda's event source mapping is played by the world: it polls,
  invokes ``Consumer.process_batch`` with records shaped as Lambda passes them
  (``message_to_record``), then deletes the records not in ``batchItemFailures``.
- **Deliveries** go through the real ``Ingestor``, signed at the virtual time: new
  events in both formats, duplicates of earlier bodies, a forged invalid body reusing a
  live generic event's id (``{"id": X, "type": "workorder.created", "data": [1]}``), a
  different payload under an existing id, the same body from another source, 150-235 KB
  bodies. Handlers (``tests.sim.world.HANDLERS``) count their runs in a ledger.

The invariants, checked where things happen:

1. **No message is deleted while its event is unfinished and unparked**, when it is
   the last copy: checked at every delete from the queue (the event source mapping)
   or the DLQ (a redrive), against the event's record at that moment. Finished is
   COMPLETED or IGNORED; parked is PARKED. (A copy may go while another
   of the same event is still queued, in flight or parked, or while the event is QUEUED:
   an operator's retry then owns it and sends its own message, checked at the end.)
2. **Every handler of every accepted event completes exactly once, or the event is
   parked with a record and an alert.** At each handler start: the invocation holds the
   event's live claim, the handler's success is not recorded yet, and the payload is
   the event's own. At each attempt's last write (finish or release): every handler the
   attempt completed is recorded. At the end (``settle``: faults off, every actor run to
   its end, an admin command that failed or timed out repeated by the operator once the
   event counts as stranded, the queue drained, the clock moved past the stalled-claim
   threshold and the sweep run), every accepted delivery's event
   is COMPLETED with each handler run (IGNORED when it has none), or PARKED
   (or in the DLQ; with no record at all only when every claim was refused) with an
   alert naming it; a handler never runs for a refused delivery. A rerun is allowed only in the window no
   design closes: the earlier run's success never reached the table because its
   invocation died (or every write after it failed); the soak report counts them.
   ``retry --force`` starts a new epoch in which every handler runs once more.
3. **No record goes back to an earlier state**: checked at every applied write against
   the item before it: only the transitions of the design (COMPLETED/IGNORED leave only
   by a forced retry, which clears the handlers); attempts never decrease; payload, its
   digest, type, source, first-seen time and ``claimedEventId`` never change; a recorded
   handler success is never lost; an IN_PROGRESS record with a live lease is changed only
   by its holder.

Bugs the simulation found are ``KNOWN_BUGS`` (``tests/sim/world.py``), each pinned by a
regression test below, ``xfail(strict=True)`` with its minimal schedule; the property
test tolerates and counts them (or does not inject the fault that sets one off) so it
keeps looking for others. When a fix lands the regression test passes, strict xfail
turns that into a failure, and the bug comes off the list and the marker off the test.

Turning a soak failure into a test: ``make soak`` prints the seed and the schedule;
``World.replay(schedule)`` reruns it step for step; shorten it by hand, keep the name.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from tests.sim.driver import format_schedule
from tests.sim.sched import FAIL, KILL, LOST, LOST_FINAL, OK
from tests.sim.world import (
    ADMIN_OPS,
    DELIVERY_KINDS,
    KNOWN_BUGS,
    MAX_RECEIVE,
    MAX_WORKERS,
    World,
)

# CI's budget: 50 schedules of up to 80 steps (3,000-4,000 steps, plus each drain), well under a minute.
EXAMPLES = 50
STEPS = 80
FAULT = st.sampled_from((OK, OK, OK, OK, OK, LOST, LOST_FINAL, FAIL, KILL))
INGEST_FAULT = st.sampled_from((OK, OK, OK, LOST, LOST_FINAL, FAIL))
TICKS = st.sampled_from((1, 2, 5, 10, 30, 61, 95, 400, 1000))


class PipelineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(tolerate=KNOWN_BUGS)

    @rule(kind=st.sampled_from(DELIVERY_KINDS), pick=st.integers(0, 99), fault=INGEST_FAULT)
    def deliver(self, kind: str, pick: int, fault: int) -> None:
        self.world.do("deliver", kind, pick, fault)

    @precondition(lambda self: self.world.sqs.visible(self.world.queue_url) and self.world.workers() < MAX_WORKERS)
    @rule(batch=st.integers(1, 10), rotate=st.integers(0, 9))
    def receive(self, batch: int, rotate: int) -> None:
        self.world.do("receive", batch, rotate)

    @precondition(
        lambda self: (
            self.world.workers() < MAX_WORKERS
            and any(m.receive_count < MAX_RECEIVE for m in self.world.sqs.in_flight(self.world.queue_url))
        )
    )
    @rule(pick=st.integers(0, 9))
    def redeliver(self, pick: int) -> None:
        self.world.do("redeliver", pick)

    # Three rules that resume an actor, so that invocations get somewhere between the other steps.
    @precondition(lambda self: bool(self.world.scheduler.live))
    @rule(actor=st.integers(0, 7), fault=FAULT)
    def advance(self, actor: int, fault: int) -> None:
        self.world.do("advance", actor, fault)

    @precondition(lambda self: bool(self.world.scheduler.live))
    @rule(actor=st.integers(0, 7), fault=FAULT)
    def advance_another(self, actor: int, fault: int) -> None:
        self.world.do("advance", actor, fault)

    @precondition(lambda self: bool(self.world.scheduler.live))
    @rule(actor=st.integers(0, 7))
    def advance_cleanly(self, actor: int) -> None:
        self.world.do("advance", actor, OK)

    @rule(seconds=TICKS)
    def tick(self, seconds: int) -> None:
        self.world.do("tick", seconds)

    @rule(operation=st.sampled_from(ADMIN_OPS), pick=st.integers(0, 99))
    def admin(self, operation: str, pick: int) -> None:
        self.world.do("admin", operation, pick)

    @invariant()
    def nothing_broken(self) -> None:
        check(self.world)

    def teardown(self) -> None:
        try:
            if not self.world.violations:
                self.world.settle()
                self.world.check_final()
                check(self.world)
        finally:
            self.world.close()


def check(world: World) -> None:
    if world.violations:
        raise AssertionError(
            "\n".join(world.violations[:8]) + "\nschedule (World.replay):\n" + format_schedule(world.log)
        )


@pytest.mark.slow
def test_random_schedules_keep_the_three_invariants(aws: None) -> None:
    started = time.perf_counter()
    run_state_machine_as_test(
        PipelineMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert time.perf_counter() - started < 300, "the state machine outgrew CI's budget"


# -- the stand-ins, and that the checks have teeth ----------------------------------------------------


def _world(**kwargs: Any) -> World:
    return World(**kwargs)


def test_a_clean_schedule_runs_every_handler_once(aws: None) -> None:
    with _world() as world:
        for pick in range(10):
            world.do("deliver", "new", pick, OK)
        world.do("deliver", "dup", 3, OK)
        world.settle()
        world.check_final()
        assert world.violations == []
        runs = {key: len(c) for key, c in world.completions.items()}
        assert runs and set(runs.values()) == {1}
        assert world.stats.reruns == 0


def test_a_lost_claim_reply_is_retried_and_recognised_as_ours(aws: None) -> None:
    with _world() as world:
        world.replay([("deliver", "new", 0, OK), ("receive", 1, 0), ("advance", 0, OK), ("advance", 0, LOST)])
        (actor,) = world.scheduler.live
        assert "(SDK retry 2)" in actor.pending  # applied once, paused before botocore's identical retry
        world.settle()
        world.check_final()
        assert world.violations == []
        assert world.raw("evt-1")["attempts"] == 1


def test_the_fake_queue_moves_a_message_to_the_dlq_on_the_receive_after_max_receive_count(aws: None) -> None:
    with _world() as world:
        world.do("deliver", "new", 0, OK)
        for _ in range(MAX_RECEIVE):
            assert world.sqs.poll(world.queue_url, 10)
            world.clock.advance(400)
        assert world.sqs.poll(world.queue_url, 10) == []
        assert [m.body for m in world.sqs.all_messages(world.dlq_url)] == [world.sent[0].delivery.body]


def test_the_fake_queue_refuses_what_sqs_refuses(aws: None) -> None:
    from botocore.exceptions import ClientError

    with _world() as world:
        big = "x" * 200_000
        with pytest.raises(ClientError) as batch:
            world.sqs.send_message_batch(
                QueueUrl=world.queue_url,
                Entries=[{"Id": "1", "MessageBody": big}, {"Id": "2", "MessageBody": big}],
            )
        assert batch.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
        with pytest.raises(ClientError) as one:
            world.sqs.send_message(QueueUrl=world.queue_url, MessageBody="x" * 262_145)
        assert one.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_the_checks_catch_a_consumer_that_acknowledges_busy_copies(aws: None, monkeypatch: Any) -> None:
    """Issue 10, point 2, put back: the busy copy of a message its holder needs is deleted."""
    from mx_webhooks import consumer

    monkeypatch.setattr(consumer.Outcome, "retry", property(lambda self: self.result in ("failed", "held")))
    with _world() as world:
        world.replay(
            [
                ("deliver", "new", 0, OK),
                ("receive", 1, 0),
                ("advance", 0, OK),  # worker A: to its claim
                ("advance", 0, OK),  # claimed; to its first handler
                ("redeliver", 0),  # the same message, delivered again to worker B
                ("advance", 1, OK),  # B: to its claim
                ("advance", 1, OK),  # "busy": acknowledged, to its delete
                ("advance", 1, OK),  # B deletes the message A needs
            ]
        )
        assert any("invariant 1" in v for v in world.violations), world.violations


# -- regression tests: bugs the simulation found, each with its minimal schedule -------------------------
#
# A new bug goes in as a KnownBug (tests/sim/world.py) and a test here marked ``@_xfail(name)``,
# which asserts ``_expect_fixed(world, symptom)``; when its fix lands the test passes, strict xfail
# fails it, and the marker comes off: the test stays, guarding the fix.

KNOWN = {bug.name: bug for bug in KNOWN_BUGS}


class StillBroken(Exception):
    """The bug's symptom is still there (the expected failure of a test marked ``_xfail``)."""


def _xfail(name: str) -> Any:
    return pytest.mark.xfail(strict=True, raises=StillBroken, reason=KNOWN[name].summary)


def _expect_fixed(world: World, symptom: str) -> None:
    """Pass when the schedule breaks nothing; raise ``StillBroken`` when it shows the bug's
    symptom; fail outright (AssertionError) when it breaks something else."""
    if not world.violations:
        return
    assert any(re.search(symptom, v) for v in world.violations), "\n".join(world.violations)
    raise StillBroken("\n".join(world.violations))


def _replay_strict(schedule: list[tuple[Any, ...]]) -> World:
    """Replay with nothing tolerated and every fault injected, settle, and return the world."""
    world = World()
    try:
        world.replay(schedule)
        world.settle()
        world.check_final()
        world.final_records = world.records()
    finally:
        world.close()
    return world


def test_regression_sweep_takes_a_refused_delivery_in_the_dlq_for_the_event_it_names(aws: None) -> None:
    """Found by the simulation, fixed in a6a65d6: the DLQ sweep identified a message by its eventId
    attribute, which a refused delivery sets to the id it names; one the queue parked unrecorded was
    never alerted (or made the sweep park the event it names)."""
    schedule: list[tuple[Any, ...]] = [
        ("deliver", "new", 0, OK),  # evt-1
        ("settle",),  # evt-1 completes
        ("deliver", "forged", 0, OK),  # {"id": "evt-1", "type": "workorder.created", "data": [1]}
    ]
    for _ in range(MAX_RECEIVE):  # every receive of it dies before the consumer records anything
        schedule += [("receive", 1, 0), ("advance", 0, KILL), ("tick", 400)]
    world = _replay_strict(schedule)  # the queue moves it to the DLQ; the sweep looks up evt-1: COMPLETED
    _expect_fixed(world, r"invalid~\w+ reached the DLQ through the queue's redrive policy \(no record")


def test_regression_admin_retry_reply_lost_requeues_an_event_a_worker_holds(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: request_retry's condition ended in `OR retryToken = :rt`
    and nothing removed the token: when its reply was lost and a worker claimed the QUEUED event before
    botocore's retry, the retry was applied again over the live claim (QUEUED, lease removed) and a
    second worker ran the handlers at the same time.
    """
    world = _replay_strict(
        [
            ("deliver", "new", 0, OK),  # evt-1, workorder.created: search.index, then crm.notify
            ("receive", 1, 0),  # worker A
            ("advance", 0, OK),
            ("advance", 0, OK),  # A claims; search.index succeeds
            ("advance", 0, OK),
            ("advance", 0, LOST),  # crm.notify fails: FAILED, back to the queue in 10 s
            ("advance", 0, OK),
            ("advance", 0, OK),
            ("tick", 11),
            ("admin", "retry", 0),  # the operator retries evt-1
            ("advance", 0, OK),  # reads it (FAILED)
            ("advance", 0, OK),
            ("advance", 0, LOST),  # request_retry applied (QUEUED), its reply lost: botocore sends it again
            ("receive", 1, 0),  # meanwhile the old message is back: worker B
            ("advance", 1, OK),
            ("advance", 1, OK),  # B claims the QUEUED event (IN_PROGRESS, B's lease); to crm.notify
            ("advance", 0, OK),  # botocore's retry: `OR retryToken = :rt` holds: QUEUED again, lease removed
            ("advance", 0, OK),  # the admin sends its message
            ("receive", 1, 0),  # worker C gets it
            ("advance", 1, OK),
            ("advance", 1, OK),  # C claims the QUEUED event while B is inside it
            ("advance", 0, OK),  # B runs crm.notify
            ("advance", 1, OK),  # C runs crm.notify: a second time
        ]
    )
    _expect_fixed(world, r"IN_PROGRESS with a live lease .* changed to QUEUED by admin")


def test_regression_refused_checkpoint_drops_the_handler_success(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: HeldClaim.checkpoint popped the result before writing it:
    a refused checkpoint left the release without that handler's success, and the retry ran the handler
    again.
    """
    world = _replay_strict(
        [
            ("deliver", "new", 5, OK),  # MaintainX WORK_ORDER_STATUS_CHANGE to DONE: three handlers
            ("receive", 1, 0),
            ("advance", 0, OK),
            ("advance", 0, OK),  # claimed
            ("advance", 0, OK),  # search.index (idempotent, no checkpoint)
            ("advance", 0, OK),  # history.append succeeds; its checkpoint follows
            ("advance", 0, FAIL),  # the checkpoint is refused; the release drops history.append's success
        ]
    )
    _expect_fixed(world, r"without recording that history.append succeeded")


def test_regression_no_alert_when_the_last_receives_die_before_the_claim(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: when the invocations of an event's last receives died
    before their claim, SQS moved the message to the DLQ and no alert named the event (only
    DLQNotEmptyAlarm, which does not notify again while the DLQ holds older messages); the sweep now
    alerts them.
    """
    schedule: list[tuple[Any, ...]] = [
        ("deliver", "new", 0, OK),
        ("receive", 1, 0),
        ("advance", 0, OK),
        ("advance", 0, OK),
        ("advance", 0, OK),
        ("advance", 0, LOST),  # crm.notify fails on receive 1: FAILED, back in 10 s
        ("advance", 0, OK),
        ("advance", 0, OK),
    ]
    for _ in range(MAX_RECEIVE - 1):  # every later receive dies before its claim (a crash, a timeout)
        schedule += [("tick", 400), ("receive", 1, 0), ("advance", 0, KILL)]
    world = _replay_strict(schedule)  # the next receive is SQS's move to the DLQ
    _expect_fixed(world, r"reached the DLQ through the queue's redrive policy")


def test_regression_no_alert_when_killed_between_parking_and_publishing(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: an invocation that recorded an event parked and died
    before its SNS publish left it parked without an alert; the sweep now alerts parked events no alert
    has named.
    """
    schedule: list[tuple[Any, ...]] = [("deliver", "new", 6, OK)]  # evt-1, request.created: ticket.open
    for _ in range(MAX_RECEIVE - 1):  # the first receives die at once
        schedule += [("receive", 1, 0), ("advance", 0, KILL), ("tick", 400)]
    schedule += [
        ("receive", 1, 0),  # the last receive the queue allows
        ("advance", 0, OK),
        ("advance", 0, OK),  # claimed
        ("advance", 0, LOST_FINAL),  # ticket.open raises PermanentError: PARKED
        ("advance", 0, OK),  # recorded; to the DLQ send
        ("advance", 0, OK),  # in the DLQ; the alert is next
        ("advance", 0, KILL),  # dies before publishing it; the message is not deleted either
    ]
    world = _replay_strict(schedule)  # its next receive is SQS's move to the DLQ
    _expect_fixed(world, r"was parked by the consumer")


def test_regression_a_parked_event_completed_later_no_longer_says_parked(aws: None) -> None:
    """Found by the simulation, fixed (ec448d2): the claim kept `parked`, so a redriven event
    completed as COMPLETED with parked=true."""
    world = _replay_strict(
        [
            ("deliver", "new", 6, OK),  # evt-1, request.created: ticket.open
            ("receive", 1, 0),
            ("advance", 0, OK),
            ("advance", 0, OK),  # claimed
            ("advance", 0, LOST_FINAL),  # ticket.open raises PermanentError: PARKED, in the DLQ
            ("settle",),
            ("admin", "redrive", 0),  # the operator fixed the cause and redrives
            ("settle",),  # evt-1 runs again and completes
        ]
    )
    assert world.violations == []
    assert world.final_records["evt-1"]["status"] == "COMPLETED"
    assert not world.final_records["evt-1"].get("parked")


def test_regression_retry_failed_runs_a_delivery_refused_for_reusing_an_event_id(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: retry-failed re-sent a delivery refused for reusing
    another payload's id with eventId = its invalid~ key, and the consumer ran its handlers under that
    key.
    """
    world = _replay_strict(
        [
            ("deliver", "new", 0, OK),  # evt-1, workorder.created
            ("deliver", "conflict", 0, OK),  # evt-1 again with another payload (workorder.updated)
            ("settle",),  # evt-1 completes; the other is refused, parked under its invalid~ key
            ("admin", "retry_failed", 0),  # the operator retries last night's failures
            ("settle",),  # the refused delivery's handlers run, as event invalid~...
        ]
    )
    _expect_fixed(world, r"ran a delivery that was refused")


def test_regression_retrying_a_large_refused_delivery_strands_it_queued(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: retrying a refused delivery re-sent its body as recorded,
    cut to 200,000 characters: no longer JSON, it was parked under another key and the retried record
    stayed QUEUED for good.
    """
    world = _replay_strict(
        [
            ("deliver", "new", 0, OK),  # evt-1
            ("deliver", "conflict", 3, OK),  # evt-1 again, another payload of ~220 KB
            ("settle",),  # refused: recorded under its invalid~ key with the body cut to 200,000 characters
            ("admin", "retry_failed", 0),  # the operator retries the failures: the cut body is sent
            ("settle",),  # not JSON: parked under another key; the retried record stays QUEUED
        ]
    )
    _expect_fixed(world, r"ended QUEUED")


def test_regression_retrying_a_parked_invalid_delivery_rewrites_its_claimed_event_id(aws: None) -> None:
    """Found by the simulation, fixed in 1a802ab: retrying a parked invalid delivery re-sent it with
    eventId = its own invalid~ key, and the consumer overwrote claimedEventId with that key.
    """
    world = _replay_strict(
        [
            ("deliver", "new", 0, OK),  # evt-1
            ("deliver", "forged", 0, OK),  # {"id": "evt-1", "data": [1]}
            ("settle",),  # evt-1 completes; the forged one is parked under its own key
            ("admin", "retry", 2),  # the operator retries the parked invalid delivery
        ]
    )
    _expect_fixed(world, r"claimedEventId changed")
