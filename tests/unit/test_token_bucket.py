"""The local stack's API throttle: a token bucket as API Gateway documents it, on a stepped clock."""

from __future__ import annotations

import threading

import pytest

from devtools.local_stack.http_front import TokenBucket


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def takes(bucket: TokenBucket, count: int) -> int:
    """How many of ``count`` requests made at the same instant get a token."""
    return sum(bucket.take() for _ in range(count))


def test_a_fresh_bucket_takes_a_whole_burst_at_once_then_throttles():
    # Given a bucket of 10 refilled at 4 per second, and a clock that does not move
    clock = Clock()
    bucket = TokenBucket(rate=4, burst=10, clock=clock)

    # When 25 requests arrive at the same instant
    admitted = takes(bucket, 25)

    # Then exactly the burst passes, the rest are throttled
    assert admitted == 10
    assert bucket.take() is False


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst():
    clock = Clock()
    bucket = TokenBucket(rate=4, burst=10, clock=clock)
    assert takes(bucket, 10) == 10

    # A quarter of a second at 4/s brings back one token, no more
    clock.advance(0.25)
    assert takes(bucket, 3) == 1

    # Two seconds bring back 8
    clock.advance(2)
    assert takes(bucket, 20) == 8

    # An hour idle refills to the burst, not to 14,400
    clock.advance(3600)
    assert takes(bucket, 100) == 10


def test_a_fraction_of_a_token_accumulates_across_requests():
    # Given a rate of 1 a second and an empty bucket
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take() is True

    # When requests come every 0.25 s: the 4th one finds a whole token
    results = []
    for _ in range(8):
        clock.advance(0.25)
        results.append(bucket.take())

    # Then one in four passes, as the rate says
    assert results == [False, False, False, True, False, False, False, True]


def test_a_steady_stream_at_the_rate_is_never_throttled_but_one_above_it_is():
    clock = Clock()
    at_rate = TokenBucket(rate=500, burst=2000, clock=clock)
    above = TokenBucket(rate=500, burst=2000, clock=clock)

    # 60 s of 500 requests a second (one every 2 ms) all pass; 600/s drains the burst
    admitted_at_rate = admitted_above = 0
    for _ in range(60 * 100):  # 10 ms steps
        clock.advance(0.01)
        admitted_at_rate += takes(at_rate, 5)
        admitted_above += takes(above, 6)

    assert admitted_at_rate == 30_000
    # 600/s for 60 s = 36,000 asked; the burst (2,000) and the refill after the first step
    # (the first 10 ms found the bucket full: 5,999 steps x 5) can pass, and no more
    assert admitted_above == 2_000 + 5_999 * 5


def test_a_thousand_deliveries_at_once_pass_the_default_limits():
    # The template's defaults (rate 500/s, burst 2000) against a MaintainX bulk edit
    clock = Clock()
    bucket = TokenBucket(rate=500, burst=2000, clock=clock)

    # 1,000 deliveries at the same instant, then another bulk edit of 1,000 one second later
    assert takes(bucket, 1000) == 1000
    clock.advance(1)
    assert takes(bucket, 1000) == 1000
    # and the old limits (50/s, burst 100) would have let through a tenth of the first one
    old = TokenBucket(rate=50, burst=100, clock=clock)
    assert takes(old, 1000) == 100


def test_zero_burst_or_zero_rate_behave_as_api_gateway_limits_of_zero():
    clock = Clock()
    closed = TokenBucket(rate=0, burst=0, clock=clock)
    assert takes(closed, 5) == 0

    # rate 0: the burst is all there ever is
    once = TokenBucket(rate=0, burst=3, clock=clock)
    assert takes(once, 5) == 3
    clock.advance(10_000)
    assert once.take() is False


def test_negative_limits_are_refused():
    with pytest.raises(ValueError):
        TokenBucket(rate=-1, burst=10)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=-10)


def test_a_clock_that_steps_back_adds_no_tokens():
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=1, clock=clock)
    assert bucket.take() is True
    clock.advance(-5)
    assert bucket.take() is False
    clock.advance(5)  # back where it was: no time has passed since the last take
    assert bucket.take() is False
    clock.advance(0.1)
    assert bucket.take() is True


def test_concurrent_takes_admit_exactly_the_burst():
    # Given a frozen clock and a bucket of 100, hit by 32 threads at once
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=100, clock=clock)
    start = threading.Barrier(32)
    admitted: list[int] = []

    def worker() -> None:
        start.wait()
        admitted.append(takes(bucket, 50))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then 1,600 requests got exactly 100 tokens between them: no token spent twice, none lost
    assert sum(admitted) == 100
