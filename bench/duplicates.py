"""The duplicate finder on the dev images and the dev photos: groups found, their sizes, and the time it takes.

    .venv/bin/python -m imgsearch.embedded exec -- .venv/bin/python -m bench.duplicates [--images 3000] [--sheets DIR]

Each set is indexed in the bench database as the app indexes it (bench/appindex.py: vectors, copy evidence, visual
words, from 1,000 images a projection with its copy space), files of the very same bytes kept once as image_add keeps
them; then one duplicate finder run goes over the whole index through the app's own code (a DuplicateRun row,
workers.duplicates.duplicates_find, search.duplicates.duplicate_groups). The time per 10,000 images is the measured
rate extrapolated (a search's cost grows little with the index: docs/benchmarks.md). With --sheets, each group of a
random sample is drawn side by side into a PNG there, to be checked by eye.
"""

import argparse
import hashlib
import os
import random
import shutil
import time
from pathlib import Path

from bench import benchdb
from bench.common import DEV_IMAGES, run_and_save

benchdb.use_once()  # the app's modules below need Django, on the bench database

from django.conf import settings  # noqa: E402

# Thumbnails of its own: bench/appindex.py names them by position, and another bench part running at the same time
# (make bench, or this script's other set) would otherwise overwrite the pixels the appearance check reads.
settings.MEDIA_ROOT = Path(settings.MEDIA_ROOT).parent / f"media-duplicates-{os.getpid()}"

from django.core.files.storage import default_storage  # noqa: E402

assert Path(default_storage.location) == settings.MEDIA_ROOT, "the storage was made before MEDIA_ROOT was moved"

from PIL import Image, ImageDraw  # noqa: E402

from bench.appindex import AppIndex  # noqa: E402
from bench.copy_detection import embed_all  # noqa: E402
from bench.copysets import PHOTOS, load_original  # noqa: E402
from workers.imageio import ImageDecodeError  # noqa: E402

SUFFIXES = (".png", ".jpg", ".jpeg")


def files_of(root, count, seed):
    """Up to `count` image files under root drawn at random that image_add would index (search.indexing.probe: a
    supported format within IMGSEARCH_MAX_PIXELS), each content once (the index keeps one per sha256)."""
    from search.indexing import probe

    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)
    random.Random(seed).shuffle(paths)
    chosen, seen = [], set()
    for path in paths:
        try:
            probe(path)
        except ValueError:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            chosen.append(path)
        if len(chosen) == count:
            break
    return chosen


def measure(embedder, root, paths, name, sheets, sample, seed, pairwise_images):
    """Index the files, run the duplicate finder over them, and the figures of the run."""
    from search import duplicates
    from search.models import DuplicateRun
    from workers.duplicates import duplicates_find

    images, kept = [], []
    for path in paths:
        try:
            images.append(load_original(path))
            kept.append(path)
        except ImageDecodeError:
            continue
    names = [str(p.relative_to(root)) for p in kept]
    index = AppIndex.build(embedder, images, embed_all(embedder, images), names=names)
    run = DuplicateRun.objects.create(only_new=False)
    started, cpu = time.perf_counter(), time.process_time()
    duplicates_find(run.id, index.space)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    load = os.getloadavg()[0]
    run.refresh_from_db()
    groups = duplicates.duplicate_groups()
    figures = {
        "set": name,
        "images": len(images),
        "checked": run.done,
        "not_checked": run.failed,
        "pairs": run.pairs_found,
        "groups": len(groups),
        "images_in_groups": sum(len(g) for g in groups),
        "largest_group": max((len(g) for g in groups), default=0),
        "seconds": round(seconds, 1),
        "images_per_second": round(len(images) / seconds, 2),
        "minutes_per_10000_images": round(10_000 / (len(images) / seconds) / 60, 1),
        # This process's own CPU time (the ranking; the database's share is not in it) and the machine's load then:
        # on a shared machine the wall-clock rate is the load's as much as the finder's.
        "cpu_seconds": round(cpu, 1),
        "cpu_minutes_per_10000_images": round(10_000 * cpu / len(images) / 60, 1),
        "load_average": round(load, 1),
    }
    pairwise_groups = pairwise(index, pairwise_images)
    figures.update(
        pairwise_images=min(pairwise_images, len(images)),
        pairwise_groups=len(pairwise_groups),
        pairwise_images_in_groups=sum(len(g) for g in pairwise_groups),
    )
    if sheets:
        for kind, found in (("", groups), ("-pairwise", pairwise_groups)):
            chosen = random.Random(seed).sample(found, min(sample, len(found)))
            for number, group in enumerate(chosen):
                members = [(names[index.position[i]], images[index.position[i]]) for i in group]
                draw_sheet(members, sheets / f"{name}{kind}-{number:02d}.png")
    return figures


def pairwise(index, count):
    """The groups a verdict of the pair alone would make, for comparison (not what the finder ships): verified
    (MIN_INLIERS) and alike (appearance.alike), without the search's distinct rule, over the first `count` images."""
    from search.duplicates import duplicate_groups_of
    from workers.duplicates import checked
    from workers.ranking import appearance, tunables

    pairs = []
    for image_id in index.ids[:count]:
        table = checked(image_id, index.space)
        for row in table or ():
            if (row.inliers or 0) >= tunables.MIN_INLIERS and appearance.alike(table.query, row):
                pairs.append((image_id, row.image_id))
    return duplicate_groups_of(pairs)


def draw_sheet(members, path, side=220):
    """The group's images side by side on one PNG, each with its file name and size."""
    sheet = Image.new("RGB", (side * len(members), side + 40), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (name, img) in enumerate(members):
        thumb = img.copy()
        thumb.thumbnail((side - 10, side - 10))
        sheet.paste(thumb, (n * side + 5, 5))
        draw.text((n * side + 5, side), f"{name[-34:]}\n{img.width}x{img.height}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def run(argv=()):
    args = parser().parse_args(list(argv))
    import torch

    from bench.common import load_embedder

    torch.set_num_threads(args.threads)
    embedder = load_embedder()
    report = []
    sets = {"dev": ("dev images", DEV_IMAGES, args.images), "photos": ("photos", PHOTOS, 10_000)}
    for name, root, count in (sets[which] for which in args.sets):
        paths = files_of(root, count, args.seed)
        if not paths:
            raise SystemExit(f"No images under {root}: fetch them first (../shared/data/fetch-dev-*).")
        figures = measure(embedder, root, paths, name.split()[0], args.sheets, args.sample, args.seed, args.pairwise)
        report.append(figures)
        print(
            f"{name}: {figures['images']} images indexed, {figures['groups']} groups of the same picture"
            f" ({figures['images_in_groups']} images, {figures['pairs']} verified pairs, largest group"
            f" {figures['largest_group']}); run {figures['seconds']} s, {figures['images_per_second']} images/s:"
            f" {figures['minutes_per_10000_images']} min per 10,000 images (extrapolated from this rate; load average"
            f" {figures['load_average']} on {os.cpu_count()} cores); its own CPU time {figures['cpu_seconds']} s:"
            f" {figures['cpu_minutes_per_10000_images']} CPU min per 10,000 images. For comparison, a verdict of the pair"
            f" alone (verified and alike, without the search's distinct rule) over {figures['pairwise_images']} of them:"
            f" {figures['pairwise_groups']} groups ({figures['pairwise_images_in_groups']} images)",
            flush=True,
        )
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    return report


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=3000, help="dev images indexed (drawn at random)")
    p.add_argument("--sets", nargs="+", choices=("dev", "photos"), default=["dev", "photos"], help="which sets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--sheets", type=Path, help="draw a random sample of groups side by side into this folder")
    p.add_argument("--sample", type=int, default=30, help="groups drawn per set with --sheets")
    p.add_argument("--pairwise", type=int, default=1000, help="images checked with the pair-alone verdict too")
    p.add_argument("--json", type=Path, help="also save the figures there")
    return p


if __name__ == "__main__":
    run_and_save(run, parser)
