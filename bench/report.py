"""The benchmark report: a summary table (figure, value, baseline, ratio, target, pass) in markdown, plus plots."""

import json
import sys

from bench.knn_bench import TARGET as KNN_TARGET
from workers.ranking.tunables import COPY_PAIRS, COPY_SPACE_FOUND


def row(figure, value, baseline="", ratio="", target="", passed=None):
    """One summary line; passed is True, False or None (informational)."""
    return {"figure": figure, "value": value, "baseline": baseline, "ratio": ratio, "target": target,
            "pass": {True: "PASS", False: "FAIL", None: "info"}[passed]}


def summary(parts):
    """Summary rows for whichever parts ran."""
    rows = []
    for name, make in (("indexing", _indexing), ("search", _search), ("search_large", _search), ("knn", _knn),
                       ("knn_large", _knn), ("memory", _memory), ("quality", _quality), ("copies", _copies),
                       ("gpu", _gpu)):
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
    rows = [row(f"GPU ({p['device']}) embedding throughput, decode ({p['decode_processes']} processes) + forward, batch "
                f"{r['batch']}, {p['dtype']}", f"{r['pipeline_img_s']} img/s", f"{r['bare_forward_img_s']} img/s (bare forward)",
                f"{r['ratio']:.2f}x", ">= 0.8x", r["ratio"] >= 0.8) for r in p["runs"]]
    return rows + [row(f"GPU: decoding alone ({p['decode_processes']} processes, {p['source']})", f"{p['decode_only_img_s']} img/s")]


def _indexing(p):
    rows = []
    for r in p["runs"]:
        deployed = " (as deployed: a worker per core)" if r["torch_threads"] == 1 else ""
        what = "with local features (default)" if r["local_features"] else "decode, resize, embed, store (local features off)"
        rows.append(row(f"Indexing throughput, {what}, {r['torch_threads']} torch thread(s){deployed} (batch {p['batch']}, "
                        f"tasks of {p['task_size']}, {p['images']} images)", f"{r['pipeline_img_s']} img/s (pipeline)",
                        f"{r['bare_forward_img_s']} img/s (bare forward)", _ratio_of_passes(r), ">= 0.8x", r["ratio"] >= 0.8))
    return rows + [row("Indexing: decoding + pre-processing alone (1 thread)", f"{p['decode_only_img_s']} img/s")]


def _ratio_of_passes(r):
    """The median ratio, and each pass's where there were several."""
    passes = r.get("ratios", [])
    return f"{r['ratio']:.2f}x" + (f" (median of {', '.join(f'{x:.2f}' for x in passes)})" if len(passes) > 1 else "")


def _search(p):
    n, rows = f"{p['indexed']:,}", []
    for name, label, work in (("plain", "without re-ranking", "embed + k-NN"), ("reranked", "with re-ranking (default)", "embed + k-NN + re-rank")):
        f = p[name]
        rows += [
            row(f"Search POST->done median @ {n}, {label}, server clock (job created -> results stored)",
                f"{f['server_median_ms']} ms (p95 {f['server_p95_ms']} ms)", f"{f['baseline_ms']} ms ({work})",
                f"{f['server_ratio']:.2f}x", "<= 1.3x", f["server_ratio"] <= 1.3),
            row(f"Search POST->done median @ {n}, {label}, client clock (POST sent -> done seen through GET ?wait=10)",
                f"{f['median_ms']} ms (p95 {f['p95_ms']} ms)", f"{f['baseline_ms']} ms ({work})", f"{f['ratio']:.2f}x", "<= 1.3x",
                f["ratio"] <= 1.3),
            row(f"Search split @ {n}, {label} (median)", f"queue {f['median_queued_ms']} / embed {f['median_embed_ms']} / k-NN "
                f"{f['median_query_ms']}" + (f" / re-rank {f['median_rerank_ms']}" if "median_rerank_ms" in f else "") + " ms"),
        ]
        if "median_before_job_ms" in f:  # reports before 2026-11-30 lack it
            rows.append(row(f"Search client clock around the server's @ {n}, {label} (median)",
                            f"{f['median_before_job_ms']} ms of the POST before the job exists + {f['median_after_done_ms']} ms from "
                            "results stored to the client having them (row update and notification, the waiting GET waking, rendering)"))
    added = p["reranked"]["median_ms"] - p["plain"]["median_ms"]
    rows.append(row(f"Re-ranking {p.get('rerank_candidates', 20)} candidates @ {n}: added to the median search", f"{added:+.1f} ms (re-rank step {p['reranked']['median_rerank_ms']} ms)",
                    target="<= 150 ms", passed=added <= 150))
    return rows


def _knn(p):
    c, exact, n = p["choice"], p["exact_seqscan"], f"{p['n']:,}"
    at_target = p["n"] >= 1_000_000
    passed = c["recall"] >= KNN_TARGET["recall"] and c["median_ms"] <= KNN_TARGET["median_ms"]
    return [
        row(f"k-NN @ {n} x {p['dim']}: HNSW m={c['m']} efc={c['ef_construction']} ef_search={c['ef_search']}",
            f"recall@10 {c['recall']:.3f}, median {c['median_ms']} ms, p95 {c['p95_ms']} ms",
            f"exact seq scan median {exact['median_ms']} ms (numpy {exact['numpy_ms_per_query']} ms)",
            f"{exact['median_ms'] / c['median_ms']:.0f}x faster", "recall >= 0.95, median <= 10 ms" + ("" if at_target else " (1M target)"),
            passed if at_target else None),
        row(f"k-NN @ {n}: HNSW build / index size", f"{c['build_s']} s / {c['index_mb']} MB", f"table {p['table_mb']} MB"),
    ]


def _memory(p):
    return [row("Worker resident memory (model loaded; after an indexing batch of 32)", f"{p['worker_rss_mb']} MB; {p['worker_rss_after_batch_mb']} MB"),
            row("Web process resident memory", f"{p['web_rss_mb']} MB", target="no torch imported", passed=not p["web_imports_torch"])]


def _quality(p):
    base, prod = p["variants"][0], next(v for v in p["variants"] if v["variant"] == p["production"])
    gain = 100 * (prod["precision_at_10"] - base["precision_at_10"])
    untagged, reranked = p["untagged_kinds"], p["production_reranked"]
    return [
        row("Category precision@10, production (learned PCA256 + tag LDA128, cross-fitted)", f"{prod['precision_at_10']:.3f}",
            f"{base['precision_at_10']:.3f} (GAP)", f"{gain:+.1f} points", ">= +5 points", gain >= 5),
        row("Category mAP, production", f"{prod['map']:.3f}", f"{base['map']:.3f} (GAP)", f"{100 * (prod['map'] - base['map']):+.1f} points"),
        row(f"Category precision@10 of {untagged['categories']} categories nobody tagged, production", f"{untagged['precision_at_10_production']:.3f}",
            f"{untagged['precision_at_10_gap']:.3f} (GAP)", f"{100 * (untagged['precision_at_10_production'] - untagged['precision_at_10_gap']):+.1f} points",
            "no loss", untagged["precision_at_10_production"] >= untagged["precision_at_10_gap"]),
        row(f"Copy detection recall@1, production (global + re-ranking of {reranked['candidates']}, as searches do)", f"{reranked['copy_recall_at_1']:.3f}",
            f"{base['copy_recall_at_1']:.3f} (GAP alone)", f"{100 * (reranked['copy_recall_at_1'] - base['copy_recall_at_1']):+.1f} points",
            ">= 0.95", reranked["copy_recall_at_1"] >= 0.95),
        row("Copy detection recall@1, production global descriptor alone", f"{prod['copy_recall_at_1']:.3f}", f"{base['copy_recall_at_1']:.3f} (GAP)"),
    ]


# Issue 9's target is for copies of real photos: the photo set, alone and among 3,000 other images (a real index is
# larger than 305 images). The mixed set (drawings, symbols, icons of 60 pixels) is held to it as a stretch goal.
COPY_TARGET = 0.95


def _copy_target(which):
    return f"stretch: >= {COPY_TARGET}" if which == "mixed" else f">= {COPY_TARGET}"


def _copies(p):
    rows = []
    for which, r in p["sets"].items():
        allr, comb, lat, size = r["recall_at_1"]["all"], r["recall_at_1"]["combined"], r["latency_ms"], r["bytes_per_image"]
        cat = r["categories"]
        rows += [
            row(f"Copies ({which}: {r['images']} images, {allr['n']} queries): recall@1, all edits", f"{allr['reranked']:.3f} re-ranked",
                f"{allr['global']:.3f} global", f"{100 * (allr['reranked'] - allr['global']):+.1f} points"),
            row(f"Copies ({which}): recall@1, combinations of three edits ({comb['n']} queries)", f"{comb['reranked']:.3f} re-ranked",
                f"{comb['global']:.3f} global", f"{100 * (comb['reranked'] - comb['global']):+.1f} points", _copy_target(which),
                comb["reranked"] >= COPY_TARGET),
            row(f"Copies ({which}): category precision@10 of unrelated queries", f"{cat['precision_at_10_reranked']:.3f} re-ranked",
                f"{cat['precision_at_10_global']:.3f} global", target="unchanged or better",
                passed=cat["precision_at_10_reranked"] >= cat["precision_at_10_global"]),
            row(f"Copies ({which}): re-ranking time per query ({p['settings']['k']} candidates, signatures of the whole set) / storage",
                f"median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms / "
                f"{size['mean'] / 1024:.1f} kB per image (max {size['max'] / 1024:.1f} kB) + {size.get('signature', 0)} B signature"
                + (f" + {p['words'] * 128 * 4} B visual words" if p.get("words") else "")),
        ]
    scale = p.get("at_scale")
    if scale:
        before, after = scale["stages"][0]["combined"], scale["stages"][-1]["combined"]
        rows.append(row(f"Copies at scale (photo set + {scale['distractors']} other images, {scale['images']} indexed): recall@1, "
                        f"combinations of three edits ({scale['queries']} queries)", f"{after:.3f} re-ranked",
                        f"{before:.3f} before signatures; {scale['global']:.3f} global", f"{100 * (after - before):+.1f} points",
                        _copy_target("at scale"), after >= COPY_TARGET))
        cat = scale.get("categories")
        if cat:
            rows.append(row(f"Copies at scale: category precision@10 of {cat['unrelated']} unrelated queries (not indexed)",
                            f"{cat['precision_at_10_reranked']:.3f} re-ranked ({cat['precision_at_10_reranked_without_copy_space']:.3f} "
                            "without the copy space)", f"{cat['precision_at_10_global']:.3f} global",
                            target="unchanged or better",
                            passed=cat["precision_at_10_reranked"] >= cat["precision_at_10_global"]))
    return rows


def markdown(report):
    """The docs/benchmarks.md text."""
    m = report["machine"]
    lines = ["# imgsearch benchmarks", "",
             f"Generated by `make bench` ({'large' if report['large'] else 'default'} run). Machine: {m['cpu']}, {m['cores']} cores, "
             f"{m['memory_gb']} GB, Python {m['python']}. Date {m['date']}, commit {m['commit']}.",
             f"Load at start: `{m['uptime']}`; at end: `{report['uptime_end']}`. Other work shares this machine, so every figure "
             "is a ratio against a baseline measured in the same run. A run with `--only` keeps the other parts of the "
             "report before it: each part's own date, commit and machine are at the end.", "",
             "| Figure | Value | Baseline | Ratio | Target | Result |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['value']} | {r['baseline']} | {r['ratio']} | {r['target']} | {r['pass']} |" for r in report["summary"]]
    lines += _quality_table(report["parts"].get("quality")) + _copies_table(report["parts"].get("copies")) + _knn_table(report["parts"])
    lines += ["", "Per-part load averages at their start: " + "; ".join(f"{k}: `{v}`" for k, v in report["load"].items()), "",
              "Per-part date and commit: " + "; ".join(f"{k}: {p.get('measured', 'n/a')}" for k, p in report["parts"].items()), "",
              "Plots: " + ", ".join(f"[{p}]({p})" for p in report["plots"]), "", "Raw figures: [benchmarks.json](benchmarks.json)."]
    return "\n".join(lines) + "\n"


def _quality_table(q):
    if not q or "error" in q:
        return []
    lines = ["", f"## Retrieval quality ({q['model']}, {q['images']} images in {q['categories']} categories, "
             f"{q['copy_queries']} copy queries)", "",
             "| Variant | P@10 | mAP | copy R@1 |", "|---|---|---|---|"]
    lines += [f"| {v['variant']} | {v['precision_at_10']:.3f} | {v['map']:.3f} | {v['copy_recall_at_1']:.3f} |" for v in q["variants"]]
    b, pr, u = q["best"], q["projection"], q["untagged_kinds"]
    r = q["production_reranked"]
    lines += ["", f"Production: **{q['production']}** (workers/projection.py), learned from the index: PCA to {pr['pca_dims']} "
              f"dimensions plus an LDA of {pr['lda_dims']} dimensions learned from the images' given tags ({pr['tags']}), "
              f"weighted {pr['beta']} in the cosine. Its category figures are cross-fitted over {pr['folds']} folds: each "
              "query was ranked by a projection learned with its fold's tags hidden. With the tags of "
              f"{u['categories']} of the categories hidden altogether, their {u['images']} images score P@10 "
              f"{u['precision_at_10_production']:.3f} against {u['precision_at_10_gap']:.3f} with GAP: images nobody tagged lose nothing.",
              "", f"Highest P@10 keeping copy R@1 within 1 point of GAP: **{b['variant']}** ({b['precision_at_10_gain_points']:+.1f} points). "
              "Alpha-QE is not the default: it ranks by similarity to the query blended with its neighbours, so the score a "
              "person sees would no longer order the results, and it costs a second k-NN query.",
              "", f"Copy R@1 with the production descriptor re-ranked as searches do (signatures over the whole index, local features for the top {r['candidates']}): "
              f"**{r['copy_recall_at_1']:.3f}**; by edit: " + ", ".join(f"{e} {v:.2f}" for e, v in r["copy_recall_by_edit"].items())
              + f". Re-ranking took a median {r['rerank_ms_median']} ms per query here.",
              "", f"GeM p={q['gem_p']}; PCA-whitening learned on the index (unsupervised), eigenvalues shrunk by "
              f"{q['whitening_shrinkage']} x their mean; alpha-QE alpha={q['alpha_qe']['alpha']}, top-{q['alpha_qe']['n']}. "
              "Shrinkage and QE n were picked on this same dev set (small grids, see bench/quality.py); the projection's "
              "sizes and weight were chosen on a disjoint set of dev images. The projection is stored with its model version "
              "(mean, 1280 x 256 and 1280 x 128 float32 matrices: 2 MB) and its vectors are 384 floats."]
    return lines


def _copies_table(c):
    if not c or "error" in c:
        return []
    k = c["settings"]["k"]
    sizes = ", ".join(f"{side} px with {count} keypoints" for side, count in c["scales"])
    lines = ["", f"## Copy detection with local-feature re-ranking (SIFT at {sizes}, {k} candidates, signatures)", "",
             f"| set | edit | n | global R@1 | re-ranked R@1 | original in global top {k} |", "|---|---|---|---|---|---|"]
    for which, r in c["sets"].items():
        lines += [f"| {which} | {edit} | {v['n']} | {v['global']:.3f} | {v['reranked']:.3f} | {v['global_at_k']:.3f} |"
                  for edit, v in r["recall_at_1"].items()]
    lines += ["", "By the size of the original (its longer side):", "", "| set | original | queries | n | global R@1 | re-ranked R@1 |",
              "|---|---|---|---|---|---|"]
    for which, r in c["sets"].items():
        for band, rows in r["by_original_size"].items():
            lines += [f"| {which} | {band} | {label} | {v['n']} | {v['global']:.3f} | {v['reranked']:.3f} |" for label, v in rows.items()]
    lines += ["", "False \"copy\" marks by inlier threshold (the app uses "
              f"{c['settings']['min_inliers']}):", "", "| set | inliers >= | R@1 | false copies among other candidates | among unrelated queries' candidates | unrelated queries with one |",
              "|---|---|---|---|---|---|"]
    for which, r in c["sets"].items():
        for th, v in r["thresholds"].items():
            (fe, ne), (fu, nu), (qu, nq) = v["false_copy_edited"], v["false_copy_unrelated"], v["unrelated_queries_with_false_copy"]
            lines.append(f"| {which} | {th} | {v['recall_at_1']:.3f} | {fe}/{ne} | {fu}/{nu} | {qu}/{nq} |")
    lines += ["", "What each part of the re-ranking adds, in this run (the first row is the re-ranking before signatures: "
              f"the first {k} candidates verified and ordered; the second adds the signature's near duplicate from the "
              "whole set; the third also credits each candidate's signature likeness to the query when picking the lead "
              "of the candidates that are not copies; the fourth also verifies the images whose visual words are nearest "
              f"the query's ({c.get('word_candidates', 'n/a')} of them, {c.get('words', 'n/a')} words learned from the set's own keypoints) "
              "and the image whose signature is likest the query's where it is below the near duplicate's threshold, "
              "kept only when verified as copies or when one leads the candidates that are not copies on the same "
              "measure, as searches do):", "",
              "| set | stage | combined R@1 | all R@1 | category P@10 of unrelated queries |", "|---|---|---|---|---|"]
    for which, r in c["sets"].items():
        lines += [f"| {which} | {v['stage']} | {v['combined']:.3f} | {v['all']:.3f} | {v['precision_at_10']:.3f} |"
                  for v in r.get("stages", [])]
    scale = c.get("at_scale")
    if scale:
        lines += ["", f"At scale: the photo set's {scale['queries']} combined-edit copies searched again with {scale['distractors']} "
                  f"other dev images indexed beside its {scale['photos']} ({scale['images']} in all, none of them another file of the same "
                  f"picture, as within each set"
                  + ("; the global k-NN through a projection learned from the index, its PCA part as for an index nobody "
                     "tagged, as the app searches from 1,000 images" if scale.get("projection") else "")
                  + ("; its copy space, learned from an edited copy of each of "
                     f"{COPY_PAIRS:,} of the indexed images (workers/edits.py: other edits than these queries'), picks the lead "
                     f"of the candidates that are not copies and brings in its {COPY_SPACE_FOUND} nearest the query, kept as "
                     "the words' finds are" if scale.get("copy_space") else "")
                  + f"; global R@1 {scale['global']:.3f}, "
                  f"original in the global top {k} {scale['global_at_k']:.3f}):", "", "| stage | combined R@1 |", "|---|---|"]
        lines += [f"| {v['stage']} | {v['combined']:.3f} |" for v in scale["stages"]]
        if scale.get("by_original_size"):
            lines += ["", "At scale, by the original's longer side (combinations of three):", "",
                      "| original | queries | global R@1 | re-ranked R@1 |", "|---|---|---|---|"]
            lines += [f"| {band} | {r['combined']['n']} | {r['combined']['global']:.3f} | {r['combined']['reranked']:.3f} |"
                      for band, r in scale["by_original_size"].items()]
    lines += ["", "The lead of the candidates that are not copies picked by cosine + weight x inliers + "
              f"{c.get('signature_weight', 0)} x signature likeness, the others in their global order (the app's weight is "
              f"{c.get('inlier_weight', 'n/a')}; 0 leaves the lead to cosine and likeness):", "",
              "| set | candidates | weight | combined R@1 | all R@1 | category P@10 of unrelated queries |", "|---|---|---|---|---|---|"]
    for which, r in c["sets"].items():
        lines += [f"| {which} | {v['candidates']} | {v['weight']} | {v['combined']:.3f} | {v['all']:.3f} | {v['precision_at_10']:.3f} |"
                  for v in r.get("fusion", [])]
    return lines


def _knn_table(parts):
    lines = []
    for key in ("knn", "knn_large"):
        p = parts.get(key)
        if not p or "error" in p:
            continue
        lines += ["", f"## k-NN at {p['n']:,} x {p['dim']} (exact seq scan median {p['exact_seqscan']['median_ms']} ms)", "",
                  "| m | ef_construction | ef_search | recall@10 | median ms | p95 ms | build s | index MB |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['m']} | {r['ef_construction']} | {r['ef_search']} | {r['recall']:.3f} | {r['median_ms']} | {r['p95_ms']} | "
                  f"{r['build_s']} | {r['index_mb']} |" for r in p["hnsw"]]
        lines += ["", _knn_choice(p)]
    return lines


def _knn_choice(p):
    """The recommended setting beside what the app uses (search.knn's m and ef_construction, IMGSEARCH_HNSW_EF_SEARCH)."""
    from search.knn import HNSW_EF_CONSTRUCTION, HNSW_M

    c, app = p["choice"], (HNSW_M, HNSW_EF_CONSTRUCTION, p.get("app_ef_search", 400))
    now = next((r for r in p["hnsw"] if (r["m"], r["ef_construction"], r["ef_search"]) == app), None)
    today = (f" The app's setting (m={app[0]}, ef_construction={app[1]}, ef_search={app[2]}) gives recall@10 {now['recall']:.3f}, "
             f"median {now['median_ms']} ms, p95 {now['p95_ms']} ms." if now else "")
    return (f"Fastest setting reaching recall@10 >= {KNN_TARGET['recall']}: m={c['m']}, ef_construction={c['ef_construction']}, "
            f"ef_search={c['ef_search']} (recall {c['recall']:.3f}, median {c['median_ms']} ms, build {c['build_s']} s).{today}")


def plots(report, folder):
    """PNG plots of quality variants and the k-NN recall/latency trade-off; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    q = report["parts"].get("quality")
    if q and "error" not in q:
        fig, ax = plt.subplots(figsize=(10, 5))
        labels = [v["variant"] for v in q["variants"]]
        for i, (key, title) in enumerate((("precision_at_10", "P@10"), ("map", "mAP"), ("copy_recall_at_1", "copy R@1"))):
            ax.barh([j + 0.27 * i for j in range(len(labels))], [v[key] for v in q["variants"]], height=0.27, label=title)
        ax.set_yticks([j + 0.27 for j in range(len(labels))], labels)
        ax.invert_yaxis()
        ax.legend()
        ax.set_title("Retrieval quality by descriptor variant")
        fig.tight_layout()
        fig.savefig(folder / "bench-quality.png", dpi=90)
        names.append("bench-quality.png")
        plt.close(fig)
    for key in ("knn", "knn_large"):
        p = report["parts"].get(key)
        if p and "error" not in p:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for m, efc in sorted({(r["m"], r["ef_construction"]) for r in p["hnsw"]}):
                rs = [r for r in p["hnsw"] if (r["m"], r["ef_construction"]) == (m, efc)]
                ax.plot([r["median_ms"] for r in rs], [r["recall"] for r in rs], "o-", label=f"m={m} efc={efc}")
            ax.axhline(KNN_TARGET["recall"], color="grey", linestyle=":")
            ax.set_xlabel("median query ms")
            ax.set_ylabel("recall@10")
            ax.set_title(f"HNSW at {p['n']:,} x {p['dim']} (exact scan {p['exact_seqscan']['median_ms']} ms)")
            ax.legend()
            fig.tight_layout()
            fig.savefig(folder / f"bench-{key}.png", dpi=90)
            names.append(f"bench-{key}.png")
            plt.close(fig)
    return names


def write(report, folder):
    """docs/benchmarks.json, docs/benchmarks.md and the plots."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report["plots"] = plots(report, folder)
    except ImportError:  # the figures still stand without their pictures
        print("matplotlib is not installed: no plots (pip install matplotlib==3.11.2)", file=sys.stderr)
        report["plots"] = []
    (folder / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "benchmarks.md").write_text(markdown(report))
