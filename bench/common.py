"""Shared helpers for the benchmark parts: the labelled dev-image subset, the model, timing and machine facts."""

import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/run.py` imports the project's packages

DEV_IMAGES = Path(os.environ.get("IMGSEARCH_DEV_IMAGES", "~/.cache/imgsearch-dev-images")).expanduser()
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2-imagenet1k.pth"
CACHE = ROOT / ".local" / "bench-run" / "cache"  # make bench keeps its own servers in .local/bench-run too
LABELLED_SOURCES = ("openclipart", "tuxpaint")
RERANK_CANDIDATES = 20  # the default of IMGSEARCH_RERANK_CANDIDATES: what a search verifies
PROJECTION_MIN_IMAGES = 1000  # the default of IMGSEARCH_PROJECTION_MIN_IMAGES: from this size searches use a projection


def weights():
    """The weights the benchmarks use: IMGSEARCH_WEIGHTS, else the shared offline file, else DEFAULT."""
    configured = os.environ.get("IMGSEARCH_WEIGHTS")
    if configured:
        return configured
    return str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else "DEFAULT"


def load_embedder(arch="mobilenet_v2"):
    """The production Embedder (torch is imported here, never by the web process)."""
    from workers.embedder import Embedder

    return Embedder(arch, weights(), "cpu")


def labelled_subset(max_images=2000, min_per_category=10, seed=0):
    """[(path, category)] balanced over `<source>/<top folder>` categories holding >= min_per_category files."""
    groups = {}
    seen = set()
    for source in LABELLED_SOURCES:
        for folder in sorted(p for p in (DEV_IMAGES / source).iterdir() if p.is_dir()):
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            unique = [p for p in files if _usable(p, seen)]
            if len(unique) >= min_per_category:
                groups[f"{source}/{folder.name}"] = unique
    if not groups:
        raise SystemExit(f"No labelled dev images under {DEV_IMAGES}; run ../shared/data/fetch-dev-images first.")
    return _balanced(groups, max_images, random.Random(seed))


def _usable(path, seen):
    """True for the first file with these bytes (the index de-duplicates too) within the indexer's pixel limit."""
    import warnings

    from PIL import Image

    from workers.imageio import MAX_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixel check is ours, below
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    return False
    except (Image.DecompressionBombError, OSError):
        return False
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest in seen:
        return False
    seen.add(digest)
    return True


def _balanced(groups, max_images, rng):
    """Take images round-robin across categories until max_images, so big folders do not dominate."""
    pools = {c: rng.sample(files, len(files)) for c, files in groups.items()}
    picked = []
    while len(picked) < max_images and any(pools.values()):
        for category in sorted(pools):
            if pools[category] and len(picked) < max_images:
                picked.append((pools[category].pop(), category))
    return sorted(picked)


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def percentiles(values_ms):
    """Median and 95th percentile of a list of milliseconds."""
    ordered = sorted(values_ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def cpu_name():
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC"), or "" where there is none: machines of one kind
    may be lent different CPUs, and absolute figures only compare on the same one."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def machine():
    """Facts that make the figures comparable: CPU, cores, memory, load, commit, date."""
    import platform

    import psutil

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", ".", ":!docs"],  # docs/: this report's own files
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpu": cpu_name() or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "commit": commit + ("+uncommitted" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "uptime": uptime(),
    }


def uptime():
    """The `uptime` line: the load average tells how noisy the timings were."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_and_save(run, parser):
    """A benchmark script's main: run(argv) prints its figures; with --json, its report is saved there too."""
    report = run(sys.argv[1:])
    out = parser().parse_args().json
    if out:
        out.write_text(json.dumps(report, indent=2, default=str))
