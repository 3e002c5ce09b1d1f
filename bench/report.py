"""The benchmark report: its summary rows (figure, value, baseline, ratio, target, pass) and writing it out, with the
page and plots of bench/report_pages.py and the figures block of docs/retrieval.md (bench/retrieval_figures.py)."""

import json
import sys

from bench import retrieval_figures
from bench.report_copies import badge_rows, duplicate_rows, verify_rows
from bench.report_knn import knn_rows
from bench.report_pages import markdown, plots


def row(figure, value, baseline="", ratio="", target="", passed=None):
    """One summary line; passed is True, False or None (informational)."""
    return {
        "figure": figure,
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "pass": {True: "PASS", False: "FAIL", None: "info"}[passed],
    }


def summary(parts):
    """Summary rows for whichever parts ran."""
    rows = []
    for name, make in (
        ("indexing", _indexing),
        ("search", _search),
        ("search_large", _search),
        ("knn", knn_rows),
        ("knn_large", knn_rows),
        ("memory", _memory),
        ("quality", _quality),
        ("copies", _copies),
        ("badges", badge_rows),
        ("verify", verify_rows),
        ("duplicates", duplicate_rows),
        ("index_load", _index_load),
        ("gpu", _gpu),
    ):
        part = parts.get(name)
        if part and "error" not in part:
            rows += make(part)
        elif part:
            rows.append(row(f"{name}: did not complete", part["error"][:120], passed=False))
    if "gpu" not in parts:
        rows.append(row("GPU embedding throughput", "not measured: the gpu part has not run"))
    return rows


def _gpu(p):
    if "skipped" in p:
        return [row("GPU embedding throughput", f"not measured: {p['skipped']}")]
    rows = [
        row(
            f"GPU ({p['device']}) embedding throughput, decode ({p['decode_processes']} processes) + forward, batch "
            f"{r['batch']}, {p['dtype']}",
            f"{r['pipeline_img_s']} img/s",
            f"{r['bare_forward_img_s']} img/s (bare forward)",
            f"{r['ratio']:.2f}x",
            ">= 0.8x",
            r["ratio"] >= 0.8,
        )
        for r in p["runs"]
    ]
    return rows + [
        row(
            f"GPU: decoding alone ({p['decode_processes']} processes, {p['source']})", f"{p['decode_only_img_s']} img/s"
        )
    ]


def _indexing(p):
    rows = []
    for r in p["runs"]:
        deployed = " (as deployed: a worker per core)" if r["torch_threads"] == 1 else ""
        what = (
            "with local features (default)"
            if r["local_features"]
            else "decode, resize, embed, store (local features off)"
        )
        rows.append(
            row(
                f"Indexing throughput, {what}, {r['torch_threads']} torch thread(s){deployed} (batch {p['batch']}, "
                f"tasks of {p['task_size']}, {p['images']} images)",
                f"{r['pipeline_img_s']} img/s (pipeline)",
                f"{r['bare_forward_img_s']} img/s (bare forward)",
                _ratio_of_passes(r),
                ">= 0.8x",
                r["ratio"] >= 0.8,
            )
        )
    return rows + [row("Indexing: decoding + pre-processing alone (1 thread)", f"{p['decode_only_img_s']} img/s")]


def _ratio_of_passes(r):
    """The median ratio, and each pass's where there were several."""
    passes = r.get("ratios", [])
    return f"{r['ratio']:.2f}x" + (f" (median of {', '.join(f'{x:.2f}' for x in passes)})" if len(passes) > 1 else "")


def _search(p):
    n, rows = f"{p['indexed']:,}", []
    for name, label, work in (
        ("plain", "without re-ranking", "embed + k-NN"),
        ("reranked", "with re-ranking (default)", "embed + k-NN + re-rank"),
    ):
        f = p[name]
        rows += [
            row(
                f"Search POST->done median @ {n}, {label}, server clock (job created -> results stored)",
                f"{f['server_median_ms']} ms (p95 {f['server_p95_ms']} ms)",
                f"{f['baseline_ms']} ms ({work})",
                f"{f['server_ratio']:.2f}x",
                "<= 1.3x",
                f["server_ratio"] <= 1.3,
            ),
            row(
                f"Search POST->done median @ {n}, {label}, client clock (POST sent -> done seen through GET ?wait=10)",
                f"{f['median_ms']} ms (p95 {f['p95_ms']} ms)",
                f"{f['baseline_ms']} ms ({work})",
                f"{f['ratio']:.2f}x",
                "<= 1.3x",
                f["ratio"] <= 1.3,
            ),
            row(
                f"Search split @ {n}, {label} (median)",
                f"queue {f['median_queued_ms']} / embed {f['median_embed_ms']} / k-NN "
                f"{f['median_query_ms']}"
                + (f" / re-rank {f['median_rerank_ms']}" if "median_rerank_ms" in f else "")
                + " ms",
            ),
        ]
        if "median_before_job_ms" in f:  # reports before 2026-11-30 lack it
            rows.append(
                row(
                    f"Search client clock around the server's @ {n}, {label} (median)",
                    f"{f['median_before_job_ms']} ms of the POST before the job exists + {f['median_after_done_ms']} ms from "
                    "results stored to the client having them (row update and notification, the waiting GET waking, rendering)",
                )
            )
    added = p["reranked"]["median_ms"] - p["plain"]["median_ms"]
    rows.append(
        row(
            f"Re-ranking {p.get('rerank_candidates', 20)} candidates @ {n}: added to the median search",
            f"{added:+.1f} ms (re-rank step {p['reranked']['median_rerank_ms']} ms)",
            target="<= 150 ms",
            passed=added <= 150,
        )
    )
    return rows


def _index_load(p):
    """Indexing photos through make run's workers (its defaults, and an index process per core) and a search during
    it, in one run (bench/index_load.py)."""
    configs = {c["config"]: c for c in p["configs"]}
    default, per_core = configs["default"], configs.get("per-core")
    what = f"{p['images']} photos of 1,024-1,280 px, local features on, make run's workers"
    noise = f"other processes used {default['others_cores']} cores"
    other = f" ({per_core['index_worker']})" if per_core else ""
    return [
        row(
            f"index_images throughput: {what} ({default['index_worker']}; {noise})",
            f"{default['images_per_s']:.1f} img/s",
            f"{per_core['images_per_s']:.1f} img/s a process per core{other}" if per_core else "",
            f"{default['images_per_s'] / per_core['images_per_s']:.2f}x" if per_core else "",
            f">= {p['target_images_per_s']:g} img/s",
            default["images_per_s"] >= p["target_images_per_s"],
        ),
        row(
            f"Search during indexing against idle (median, server's time): {what}",
            f"{default['ratio']:.2f}x ({default['search_busy_ms']:.0f} / {default['search_idle_ms']:.0f} ms)",
            f"{per_core['ratio']:.2f}x a process per core" if per_core else "",
            target=f"<= {p['target_ratio']:g}x",
            passed=default["ratio"] <= p["target_ratio"],
        ),
    ]


def _memory(p):
    return [
        row(
            "Worker resident memory (model loaded; after an indexing batch of 32)",
            f"{p['worker_rss_mb']} MB; {p['worker_rss_after_batch_mb']} MB",
        ),
        row(
            "Web process resident memory",
            f"{p['web_rss_mb']} MB",
            target="no torch imported",
            passed=not p["web_imports_torch"],
        ),
    ]


def _quality(p):
    base, prod = p["variants"][0], next(v for v in p["variants"] if v["variant"] == p["production"])
    gain = 100 * (prod["precision_at_10"] - base["precision_at_10"])
    untagged, reranked = p["untagged_kinds"], p["production_reranked"]
    return [
        row(
            "Category precision@10, production (learned PCA256 + tag LDA128, cross-fitted)",
            f"{prod['precision_at_10']:.3f}",
            f"{base['precision_at_10']:.3f} (GAP)",
            f"{gain:+.1f} points",
            ">= +5 points",
            gain >= 5,
        ),
        row(
            "Category mAP, production",
            f"{prod['map']:.3f}",
            f"{base['map']:.3f} (GAP)",
            f"{100 * (prod['map'] - base['map']):+.1f} points",
        ),
        row(
            f"Category precision@10 of {untagged['categories']} categories nobody tagged, production",
            f"{untagged['precision_at_10_production']:.3f}",
            f"{untagged['precision_at_10_gap']:.3f} (GAP)",
            f"{100 * (untagged['precision_at_10_production'] - untagged['precision_at_10_gap']):+.1f} points",
            "no loss",
            untagged["precision_at_10_production"] >= untagged["precision_at_10_gap"],
        ),
        row(
            f"Copy detection recall@1, production (global + re-ranking of {reranked['candidates']}, as searches do)",
            f"{reranked['copy_recall_at_1']:.3f}",
            f"{base['copy_recall_at_1']:.3f} (GAP alone)",
            f"{100 * (reranked['copy_recall_at_1'] - base['copy_recall_at_1']):+.1f} points",
            ">= 0.95",
            reranked["copy_recall_at_1"] >= 0.95,
        ),
        row(
            "Copy detection recall@1, production global descriptor alone",
            f"{prod['copy_recall_at_1']:.3f}",
            f"{base['copy_recall_at_1']:.3f} (GAP)",
        ),
    ]


# Issue 9's target is for copies of real photos: the photo set, alone and among 3,000 other images (a real index is
# larger than 305 images). The mixed set (drawings, symbols, icons of 60 pixels) is held to it as a stretch goal.
COPY_TARGET = 0.95


def _copy_target(which):
    return f"stretch: >= {COPY_TARGET}" if which == "mixed" else f">= {COPY_TARGET}"


def _copies(p):
    rows = []
    for which, r in p["sets"].items():
        allr, comb, lat, size = (
            r["recall_at_1"]["all"],
            r["recall_at_1"]["combined"],
            r["latency_ms"],
            r["bytes_per_image"],
        )
        cat = r["categories"]
        rows += [
            row(
                f"Copies ({which}: {r['images']} images, {allr['n']} queries): recall@1, all edits",
                f"{allr['reranked']:.3f} re-ranked",
                f"{allr['global']:.3f} global",
                f"{100 * (allr['reranked'] - allr['global']):+.1f} points",
            ),
            row(
                f"Copies ({which}): recall@1, combinations of three edits ({comb['n']} queries)",
                f"{comb['reranked']:.3f} re-ranked",
                f"{comb['global']:.3f} global",
                f"{100 * (comb['reranked'] - comb['global']):+.1f} points",
                _copy_target(which),
                comb["reranked"] >= COPY_TARGET,
            ),
            row(
                f'Copies ({which}): the original first and badged "Same picture", combinations of three edits',
                f"{comb.get('badged', float('nan')):.3f}",
                f"{comb['reranked']:.3f} first (recall@1)",
            ),
            row(
                f"Copies ({which}): category precision@10 of unrelated queries",
                f"{cat['precision_at_10_reranked']:.3f} re-ranked",
                f"{cat['precision_at_10_global']:.3f} global",
                target="unchanged or better",
                passed=cat["precision_at_10_reranked"] >= cat["precision_at_10_global"],
            ),
            row(
                f"Copies ({which}): re-ranking time per query ({p['settings']['k']} candidates, signatures of the whole set) / storage",
                f"median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms / "
                f"{size['mean'] / 1024:.1f} kB per image (max {size['max'] / 1024:.1f} kB) + {size.get('signature', 0)} B signature"
                + (f" + {p['words'] * 128 * 4} B visual words" if p.get("words") else ""),
            ),
        ]
    scale = p.get("at_scale")
    if scale:
        before, after = scale["stages"][0]["combined"], scale["stages"][-1]["combined"]
        rows.append(
            row(
                f"Copies at scale (photo set + {scale['distractors']} other images, {scale['images']} indexed): recall@1, "
                f"combinations of three edits ({scale['queries']} queries)",
                f"{after:.3f} re-ranked",
                f"{before:.3f} before signatures; {scale['global']:.3f} global",
                f"{100 * (after - before):+.1f} points",
                _copy_target("at scale"),
                after >= COPY_TARGET,
            )
        )
        if "badged" in scale:
            rows.append(
                row(
                    'Copies at scale: the original first and badged "Same picture"',
                    f"{scale['badged']:.3f}",
                    f"{after:.3f} first (recall@1)",
                )
            )
        cat = scale.get("categories")
        if cat:
            rows.append(
                row(
                    f"Copies at scale: category precision@10 of {cat['unrelated']} unrelated queries (not indexed)",
                    f"{cat['precision_at_10_reranked']:.3f} re-ranked ({cat['precision_at_10_reranked_without_copy_space']:.3f} "
                    "without the copy space)",
                    f"{cat['precision_at_10_global']:.3f} global",
                    target="unchanged or better",
                    passed=cat["precision_at_10_reranked"] >= cat["precision_at_10_global"],
                )
            )
    return rows


def write(report, folder):
    """docs/benchmarks.json, docs/benchmarks.md, the plots, and the figures block of docs/retrieval.md."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report["plots"] = plots(report, folder)
    except ImportError:  # the figures still stand without their pictures
        print("matplotlib is not installed: no plots (pip install matplotlib==3.11.2)", file=sys.stderr)
        report["plots"] = []
    (folder / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "benchmarks.md").write_text(markdown(report))
    retrieval = folder / "retrieval.md"  # its figures block, from the same report
    if retrieval.is_file():
        parts = json.loads((folder / "benchmarks.json").read_text())["parts"]
        retrieval.write_text(retrieval_figures.rewrite(retrieval.read_text(), parts))
