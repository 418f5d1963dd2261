"""The retry schedule: the default outlasts a day-long outage; the brief's profile is 1, 2, 4, 8 s."""

from __future__ import annotations

from mx_webhooks.consumer import ConsumerConfig, backoff_seconds


def _config(**env: str) -> ConsumerConfig:
    return ConsumerConfig.model_validate({"TABLE_NAME": "t", "QUEUE_URL": "q", "DLQ_URL": "d", **env})


def test_the_default_schedule_retries_for_over_24_hours_even_with_the_most_jitter():
    config = _config()
    worst = sum(
        backoff_seconds(n, config.backoff_base_seconds, config.backoff_cap_seconds, config.backoff_jitter, lambda: 1.0)
        for n in range(1, config.last_attempt)
    )
    assert config.last_attempt == 125 < config.max_receive_count
    assert worst >= 24 * 3600


def test_the_briefs_profile_waits_1_2_4_8_seconds_and_parks_on_the_fifth_failure():
    config = _config(RETRY_ATTEMPTS="5", BACKOFF_BASE_SECONDS="1", BACKOFF_JITTER="0")
    delays = [
        backoff_seconds(n, config.backoff_base_seconds, config.backoff_cap_seconds, config.backoff_jitter)
        for n in range(1, config.last_attempt)
    ]
    assert delays == [1, 2, 4, 8]
    assert config.last_attempt == 5
