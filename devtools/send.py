"""Sign and post sample MaintainX webhooks: the test-webhook tool.

    python -m devtools.send                                  # one workorder.created, real format, to :3000 ($PORT)
    python -m devtools.send --type all --format generic      # every event type
    python -m devtools.send --url https://<api>/webhooks/maintainx --secret "$SECRET"
    python -m devtools.send --duplicate                      # the same body twice (a MaintainX retry)
    python -m devtools.send --wrong-secret                   # must be rejected: exits 0 on a 401
    python -m devtools.send --stale | --future               # timestamp 10 minutes off: must be a 401
    python -m devtools.send --burst 200 --concurrency 20     # 200 distinct events, latency summary

Prints each response (status, body, milliseconds). Exits 0 when every response is
what a correct receiver answers: a 2xx for a genuine delivery, a 401 for a wrong
secret or a stale/future timestamp (``--expect`` overrides); 1 otherwise; 2 when the
URL cannot be reached. The payloads and signatures come from ``devtools.samples``,
the same ones the tests and ``events/`` use. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from devtools import samples

# the local stack's, on $PORT as `make run` and `make send` use it
DEFAULT_URL = f"http://127.0.0.1:{os.environ.get('PORT') or 3000}/webhooks/maintainx"
SKEW_SECONDS = 600  # twice the default tolerance: outside it both ways


@dataclass
class Result:
    label: str
    status: int  # 0 = no answer
    body: str
    ms: float


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 15) -> tuple[int, str]:
    """POST and return (status, body); (0, reason) when there is no HTTP answer."""
    request = urllib.request.Request(url, data=body, headers={**headers, "user-agent": "devtools.send"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def build_body(event_type: str, fmt: str, index: int, run: str) -> bytes:
    """A distinct delivery per (run, index): a new generic id, a new real-format work order id."""
    if fmt == "generic":
        return samples.encode(samples.generic_payload(event_type, event_id=f"evt_{run}_{index}"))
    return samples.encode(samples.maintainx_payload(event_type, work_order_id=90001 + index))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.send",
        description="Sign and post a sample MaintainX webhook.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"webhook URL (default {DEFAULT_URL})")
    parser.add_argument("--secret", default=samples.LOCAL_SECRET, help="signing secret (default: the local one)")
    parser.add_argument("--type", default="workorder.created", choices=[*samples.EVENT_TYPES, "all"])
    parser.add_argument("--format", default="maintainx", choices=samples.FORMATS)
    parser.add_argument("--source", help="named source: posts to <url>/<source>")
    parser.add_argument("--duplicate", action="store_true", help="send the same body twice, newly signed")
    parser.add_argument("--wrong-secret", action="store_true", help="sign with a wrong secret")
    skew = parser.add_mutually_exclusive_group()
    skew.add_argument("--stale", action="store_true", help=f"timestamp {SKEW_SECONDS} s in the past")
    skew.add_argument("--future", action="store_true", help=f"timestamp {SKEW_SECONDS} s in the future")
    parser.add_argument("--burst", type=int, default=1, metavar="N", help="send N distinct events")
    parser.add_argument("--concurrency", type=int, default=10, help="parallel requests for --burst")
    parser.add_argument("--expect", type=int, help="the status every response must have")
    parser.add_argument("--quiet", action="store_true", help="only the summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    url = args.url.rstrip("/") + (f"/{args.source}" if args.source else "")
    secret = "wrong-" + uuid.uuid4().hex[:8] if args.wrong_secret else args.secret
    rejected = args.wrong_secret or args.stale or args.future
    types = list(samples.EVENT_TYPES) if args.type == "all" else [args.type]
    run = uuid.uuid4().hex[:8]

    def timestamp() -> int:
        now = int(time.time())
        return now - SKEW_SECONDS if args.stale else now + SKEW_SECONDS if args.future else now

    jobs: list[tuple[str, bytes]] = []
    for _ in range(max(1, args.burst)):
        for event_type in types:
            body = build_body(event_type, args.format, len(jobs), run)
            jobs.append((event_type, body))
            if args.duplicate:
                jobs.append((f"{event_type} (duplicate)", body))

    def send(job: tuple[str, bytes]) -> Result:
        label, body = job
        started = time.perf_counter()
        status, answer = post(url, body, samples.signed_headers(body, secret, args.format, timestamp()))
        return Result(label, status, answer, (time.perf_counter() - started) * 1000)

    if args.duplicate or len(jobs) == 1:
        results = []
        for job in jobs:  # in order: the duplicate must arrive second
            results.append(send(job))
            if args.duplicate:
                time.sleep(1.0)  # a new signature timestamp, as a MaintainX retry has
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
            results = list(pool.map(send, jobs))

    if not args.quiet:
        for result in results:
            print(f"{result.status or 'ERR'}  {result.ms:6.0f} ms  {result.label:<28} {result.body.strip()}")

    expected = args.expect if args.expect is not None else (401 if rejected else None)
    return _summary(results, url, expected, quiet=args.quiet)


def _summary(results: list[Result], url: str, expected: int | None, *, quiet: bool) -> int:
    """The counts and latencies of a burst; the exit code (0 all as expected, 1 not, 2 unreachable)."""
    unreachable = [r for r in results if r.status == 0]
    good = [r for r in results if (r.status == expected if expected else 200 <= r.status < 300)]
    if len(results) > 1 or quiet:
        counts = Counter(r.status for r in results)
        latencies = sorted(r.ms for r in results)
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
        print(
            f"{len(results)} requests to {url}: "
            + ", ".join(f"{status or 'no answer'} x{n}" for status, n in sorted(counts.items()))
            + f"; latency median {statistics.median(latencies):.0f} ms, p95 {p95:.0f} ms"
        )
    if unreachable:
        print(f"could not reach {url}: {unreachable[0].body}", file=sys.stderr)
        return 2
    if len(good) != len(results):
        want = str(expected) if expected else "a 2xx"
        print(f"{len(results) - len(good)} of {len(results)} responses were not {want}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
