"""Load a running imgsearch (loopback only): N clients search with edited copies of real images for D seconds.

    .venv/bin/python bench/load.py [--url http://127.0.0.1:8000] [--clients 50] [--seconds 60] [--images DIR]

Each client keeps its own session cookie, uploads an edited copy of a random image, polls its job until
done or failed, and starts again. A 429 or 503 is a refusal: the client waits Retry-After seconds, as a
polite client would. Prints throughput, latency median/p95/p99 and the counts; exits 1 on any error or
lost job (a 202 whose job did not finish by the end plus --grace seconds). Back-pressure is the server's
IMGSEARCH_MAX_PENDING_SEARCHES: run the server with a small one (e.g. 10) to see refusals. Plain threads
and urllib, so it needs nothing beyond Pillow.
"""

import argparse
import http.cookiejar
import json
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import edited_copy  # noqa: E402  (the same "found on the web" edit the tests use)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def main():
    args = parse_args()
    queries = load_queries(Path(args.images), args.distinct)
    stop_at = time.monotonic() + args.seconds
    give_up_at = stop_at + args.grace
    counts, latencies, lock = Counter(), [], threading.Lock()

    def record(key, latency=None, kind=None):
        with lock:
            counts[key] += 1
            if kind:
                counts[f"error: {kind}"] += 1
            if latency is not None:
                latencies.append(latency)

    started = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(args.url, queries, stop_at, give_up_at, record, seed))
        for seed in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(args, counts, latencies, time.monotonic() - started)
    return 1 if counts["error"] or counts["lost"] else 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--grace", type=float, default=60, help="seconds after the end for started jobs to finish")
    parser.add_argument(
        "--images",
        default=str(ROOT / ".local" / "media" / "index"),
        help="a folder of indexed images (default: make run's); their edited copies are the queries",
    )
    parser.add_argument("--distinct", type=int, default=100, help="how many different query images to prepare")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load test runs against loopback only")
    if not 1 <= args.clients <= 500 or not 0 < args.seconds <= 3600:
        parser.error("--clients is 1..500 and --seconds 1..3600")
    return args


def load_queries(folder, count):
    """Edited copies prepared up front, so the clients spend no CPU on them during the run."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"no images under {folder}")
    return [edited_copy(p) for p in random.Random(0).sample(files, min(count, len(files)))]


def client(base, queries, stop_at, give_up_at, record, seed):
    """One visitor with its own cookie: search, poll to the end, repeat until the time is up."""
    rng = random.Random(seed)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    while time.monotonic() < stop_at:
        began = time.monotonic()
        try:
            status, headers, body = post_search(opener, base, rng.choice(queries))
        except OSError as exc:
            record("error", kind=type(exc).__name__)
            time.sleep(1)
            continue
        queue_full = status == 503 and "queue is full" in str((body or {}).get("detail", ""))
        if status == 429 or queue_full:  # back-pressure; any other 503 (e.g. database down) is an error
            record(f"refused {status}")
            time.sleep(float(headers.get("Retry-After") or 1))
            continue
        if status != 202:
            record("error", kind=f"POST {status}")
            continue
        record("started")
        outcome, kind = poll(opener, body["url"], give_up_at)
        record(outcome, time.monotonic() - began if outcome == "done" else None, kind=kind)


def post_search(opener, base, image):
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n10\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base}/api/v1/searches/",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    return fetch(opener, request)


def poll(opener, url, give_up_at):
    """('done' | 'failed' | 'error' | 'lost', what the error was); 'lost': still unfinished at give_up_at."""
    while time.monotonic() < give_up_at:
        try:
            status, _, body = fetch(opener, url)
        except OSError as exc:
            return "error", type(exc).__name__
        if status != 200:
            return "error", f"GET {status}"
        if body["status"] in ("done", "failed"):
            return body["status"], None
        time.sleep(0.1)
    return "lost", None


def fetch(opener, request):
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return exc.code, exc.headers, body if isinstance(body, dict) else {}


def report(args, counts, latencies, elapsed):
    ms = sorted(x * 1000 for x in latencies)
    pct = (lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]) if ms else (lambda q: float("nan"))
    print(f"{args.clients} clients for {args.seconds:.0f} s against {args.url} ({elapsed:.1f} s with the drain)")
    print(
        f"  searches started {counts['started']}, done {counts['done']}, failed {counts['failed']}, "
        f"lost {counts['lost']}, errors {counts['error']}"
    )
    print(f"  refusals: 503 {counts['refused 503']}, 429 {counts['refused 429']} (Retry-After honoured)")
    kinds = {k[7:]: n for k, n in counts.items() if k.startswith("error: ")}
    if kinds:
        print(f"  errors by kind: {kinds}")
    print(f"  throughput {counts['done'] / elapsed:.2f} searches/s")
    if ms:
        print(
            f"  latency (upload to done) median {statistics.median(ms):.0f} ms, p95 {pct(0.95):.0f} ms, "
            f"p99 {pct(0.99):.0f} ms, max {ms[-1]:.0f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
