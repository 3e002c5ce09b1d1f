"""Load a running imgsearch (loopback only): N clients search with edited copies of real images for D seconds.

    .venv/bin/python bench/load.py [--url http://127.0.0.1:8000] [--clients 50] [--seconds 60] [--images DIR]
    .venv/bin/python bench/load.py --chaos "$(pgrep -f 'imgsearch.embedded run')"   # and kill its processes

Each client keeps its own session cookie, uploads an edited copy of a random image, polls its job until
done or failed, and starts again. A 429 or 503 is a refusal: the client waits Retry-After seconds, as a
polite client would; a poll that cannot connect (the web server restarting) is tried again, as the page does.
Prints throughput, latency median/p95/p99 and the counts; exits 1 on any error or lost job (a 202 whose job did
not finish by the end plus --grace seconds). With --chaos PID (the pid of `make run`, imgsearch.embedded run), it
kills with SIGKILL, evenly spread over the run, the search worker, the index worker, beat, one web (gunicorn)
worker and the web server, and says how long the site took to answer again after each. Back-pressure is the server's
IMGSEARCH_MAX_PENDING_SEARCHES: run the server with a small one (e.g. 10) to see refusals. Plain threads
and urllib, so it needs nothing beyond Pillow.
"""

import argparse
import http.client
import http.cookiejar
import json
import os
import random
import signal
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
# A connection refused, reset or cut in the middle of an answer (the web worker that served it was killed).
CUT = (OSError, http.client.HTTPException)
# What --chaos kills, in this order: the processes of `make run` (imgsearch/embedded.py) as `ps` shows them.
VICTIMS = ("search worker", "index worker", "beat", "web worker", "web server")


def main():
    args = parse_args()
    queries = load_queries(Path(args.images), args.distinct)
    deadline = Deadline(args.seconds, args.grace)
    counts, latencies, lock = Counter(), [], threading.Lock()

    def record(key, latency=None, kind=None):
        with lock:
            counts[key] += 1
            if kind:
                counts[f"{key}: {kind}"] += 1
            if latency is not None:
                latencies.append(latency)

    started = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(args.url, queries, deadline, record, seed))
        for seed in range(args.clients)
    ]
    for t in threads:
        t.start()
    if args.chaos:
        for victim, recovered in chaos(args.chaos, args.url, VICTIMS, deadline.stop_at):
            print(f"  killed the {victim}: the site answered again after {recovered:.1f} s", flush=True)
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
    parser.add_argument("--chaos", type=int, metavar="PID", help="kill the processes of this `make run` during the run")
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


class Deadline:
    """When the clients stop starting searches, and when they stop waiting for the ones started (a test may move
    them: tests/test_chaos.py)."""

    def __init__(self, seconds, grace):
        self.stop_at = time.monotonic() + seconds
        self.grace = grace

    def stop_now(self):
        self.stop_at = time.monotonic()

    @property
    def give_up_at(self):
        return self.stop_at + self.grace


def client(base, queries, deadline, record, seed):
    """One visitor with its own cookie: search, poll to the end, repeat until the time is up."""
    rng = random.Random(seed)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    while time.monotonic() < deadline.stop_at:
        began = time.monotonic()
        try:
            status, headers, body = post_search(opener, base, rng.choice(queries))
        except CUT as exc:
            record("error", kind=f"POST cut: {type(exc).__name__}")
            time.sleep(1)
            continue
        queue_full = status == 503 and "queue is full" in str((body or {}).get("detail", ""))
        if status == 429 or queue_full:  # back-pressure; any other 503 (e.g. database down) is an error
            record(f"refused {status}" + (" with Retry-After" if headers.get("Retry-After") else ""))
            time.sleep(float(headers.get("Retry-After") or 1))
            continue
        if status != 202:
            record("error", kind=f"POST {status}")
            continue
        record("started")
        outcome, kind = poll(opener, body["url"], deadline)
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


def poll(opener, url, deadline):
    """('done' | 'failed' | 'error' | 'lost', the error or the job's reason for failing); 'lost': still unfinished
    at give_up_at. A connection refused or cut (the web server restarting) is tried again."""
    while time.monotonic() < deadline.give_up_at:
        try:
            status, _, body = fetch(opener, url)
        except CUT:
            time.sleep(0.5)
            continue
        if status != 200:
            return "error", f"GET {status}"
        if body["status"] in ("done", "failed"):
            return body["status"], body.get("error") or None
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
    refused = {k[8:]: n for k, n in counts.items() if k.startswith("refused ")}
    print(f"  refusals: {refused or 'none'} (Retry-After honoured)")
    for outcome in ("error", "failed"):
        kinds = {k[len(outcome) + 2 :]: n for k, n in counts.items() if k.startswith(f"{outcome}: ")}
        if kinds:
            print(f"  {outcome} by kind: {kinds}")
    print(f"  throughput {counts['done'] / elapsed:.2f} searches/s")
    if ms:
        print(
            f"  latency (upload to done) median {statistics.median(ms):.0f} ms, p95 {pct(0.95):.0f} ms, "
            f"p99 {pct(0.99):.0f} ms, max {ms[-1]:.0f} ms"
        )


def run_processes(launcher):
    """{name: pid} of the processes that `make run` (pid launcher) runs now, as `ps` shows them; a Celery worker is
    its main process (the one the user sees and the supervisor started), not its pool child."""
    import psutil

    found = {}
    for child in psutil.Process(launcher).children():
        command = " ".join(child.cmdline())
        for name, mark in (("search worker", "search@"), ("index worker", "index@"), ("beat", " beat ")):
            if "celery" in command and mark in command:
                found[name] = child.pid
        if "gunicorn" in command:
            found["web server"] = child.pid
            workers = child.children()
            if workers:
                found["web worker"] = workers[0].pid
    return found


def kill(launcher, victim):
    """SIGKILL one process of `make run` by name; its pid."""
    pid = run_processes(launcher)[victim]
    os.kill(pid, signal.SIGKILL)
    return pid


def site_answers(url, timeout=2):
    try:
        with urllib.request.urlopen(f"{url}/", timeout=timeout) as response:
            return response.status == 200
    except CUT:
        return False


def chaos(launcher, url, victims, stop_at):
    """Kill the victims in turn, evenly spread until stop_at; yield (victim, seconds until the site answered)."""
    gap = (stop_at - time.monotonic()) / (len(victims) + 1)
    for victim in victims:
        time.sleep(max(0.0, gap))
        killed = time.monotonic()
        kill(launcher, victim)
        while not site_answers(url) and time.monotonic() < killed + 60:
            time.sleep(0.1)
        yield victim, time.monotonic() - killed  # 60 s or more: it did not answer


if __name__ == "__main__":
    sys.exit(main())
