"""The report's rows of the copy-aware parts: the "Same picture" badge's precision and recall (bench/badges.py), the
re-ranking's cost on photos (bench/verify_cost.py) and the duplicate finder (bench/duplicates.py)."""

from bench import report  # for report.row, looked up when called: bench.report imports this module

BADGE_TARGETS = {
    "photos": 0.0,
    "drawings and symbols": 1.0,
    "variants of indexed drawings": 1.0,
}  # false badges per 1,000 queries that copy nothing


def badge_rows(p):
    """False "Same picture" badges per 1,000 queries that are no copy of anything indexed, and the copies' badges."""
    rows = []
    for name, r in p["sets"].items():
        target = BADGE_TARGETS.get(name)
        rows.append(
            report.row(
                f'"Same picture" on a picture that is no copy: {name} ({r["queries"]} queries, '
                f"{p['indexed']['drawings']} drawings and {p['indexed']['emoji']} emoji indexed)",
                f"{r['per_1000_queries']} per 1,000 queries ({r['false']} badges on {r['queries_with_false']} queries)"
                + (
                    f"; {r['same_subject']} on the same emoji's other artwork or the same design"
                    if r["same_subject"]
                    else ""
                ),
                target="" if target is None else f"<= {target:g} per 1,000",
                passed=None if target is None else r["per_1000_queries"] <= target,
            )
        )
    c = p["copies"]
    rows.append(
        report.row(
            f'"Same picture" on copies (three edits) of those indexed drawings and emoji ({c["queries"]} queries)',
            f"{c['badged_at_1']:.3f} badged first",
            f"{c['recall_at_1']:.3f} first (recall@1)",
        )
    )
    return rows


VERIFY_TARGETS = {"median_ms": 60.0, "p95_ms": 120.0}  # issue 30: re-ranking per search on photos of >= 1,024 px


def verify_rows(p):
    """Re-ranking time per search and copy recall@1 of combined edits, before and after issue 30, in one run."""
    rows, indexed = [], p["indexed"]
    for name, r in p["sets"].items():
        before, after = r["before"], r["after"]
        what = (
            f"photos of >= 1,024 px ({r['queries']} combined-edit copies)"
            if name == "photos"
            else f"dev images ({r['queries']} combined-edit copies)"
        )
        for key, label in (("median_ms", "median"), ("p95_ms", "p95")):
            target = VERIFY_TARGETS[key] if name == "photos" else None
            rows.append(
                report.row(
                    f"Re-ranking per search, {label}: {what}, {indexed['photos']} photos + {indexed['dev images']} dev "
                    "images indexed",
                    f"{after[key]:.1f} ms",
                    f"{before[key]:.1f} ms before",
                    f"{after[key] / before[key]:.2f}x",
                    "" if target is None else f"<= {target:g} ms",
                    None if target is None else after[key] <= target,
                )
            )
        rows.append(
            report.row(
                f"Copy recall@1 (badged first) with / without issue 30's re-ranking changes: {what}",
                f"{after['recall_at_1']:.3f} ({after['badged_first']:.3f})",
                f"{before['recall_at_1']:.3f} ({before['badged_first']:.3f}) before",
                target="unchanged or better",
                passed=after["recall_at_1"] >= before["recall_at_1"],
            )
        )
    return rows


def duplicate_rows(p):
    """The duplicate finder over the dev images and the photos (bench/duplicates.py): groups, and time per 10,000."""
    rows = []
    for s in p["sets"]:
        rows.append(
            report.row(
                f"Duplicate finder, {s['set']}: {s['images']} images indexed, one run over the whole index",
                f"{s['groups']} groups ({s['images_in_groups']} images, largest {s['largest_group']}); "
                f"{s['minutes_per_10000_images']} min per 10,000 images ({s['images_per_second']} images/s, "
                f"load {s['load_average']}); {s['cpu_minutes_per_10000_images']} CPU min per 10,000",
                f"{s['pairwise_groups']} groups from the pair alone (no distinct rule), first {s['pairwise_images']} images",
            )
        )
    return rows
