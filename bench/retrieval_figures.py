"""The figures block of docs/retrieval.md, written from docs/benchmarks.json by `make bench` (bench/report.py), so
the page that says what each ranking stage buys never holds a hand-copied figure; tests/test_docs.py checks that the
block is what the current benchmarks.json gives."""

import re

BEGIN = "<!-- figures: written by bench/retrieval_figures.py from docs/benchmarks.json; do not edit by hand -->"
END = "<!-- end of figures -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def block(parts):
    """The markdown between BEGIN and END for these report parts."""
    lines = [BEGIN, ""]
    for name, make in (
        ("copies", _stages),
        ("copies", _costs),
        ("quality", _global_vector),
        ("indexing", _indexing),
        ("search", _search),
        ("search_large", _search),
    ):
        part = parts.get(name)
        if part and "error" not in part:
            lines += make(part) + [""]
    measured = sorted(
        {
            f"{name}: {parts[name]['measured']}"
            for name in ("copies", "quality", "indexing", "search", "search_large")
            if name in parts
        }
    )
    lines += ["Measured: " + "; ".join(measured) + ".", "", END]
    return "\n".join(lines)


def rewrite(text, parts):
    """The page `text` with its figures block replaced by the one of these parts (unchanged without markers)."""
    return _BLOCK.sub(lambda _: block(parts), text)


def _stages(c):
    """Recall@1 of combined-edit copies at each stage, on every set, and the unrelated queries' precision."""
    sets, scale = c["sets"], c.get("at_scale")
    names = [s["stage"] for s in next(iter(sets.values()))["stages"]]
    head = [f"{which} set ({r['images']} images)" for which, r in sets.items()]
    if scale:
        head.append(f"at scale ({scale['images']} images)")
    lines = [
        "Recall@1 of copies with three edits at once, each stage added to those above it (the last row is what "
        "searches do), and the category precision@10 of unrelated queries' results:",
        "",
        "| stage | " + " | ".join(head) + " | P@10 of unrelated queries |",
        "|---|" + "---|" * (len(head) + 1),
    ]
    for n, name in enumerate(names):
        cells = [f"{r['stages'][n]['combined']:.3f}" for r in sets.values()]
        if scale:
            cells.append(f"{scale['stages'][n]['combined']:.3f}")
        precision = " / ".join(f"{r['stages'][n]['precision_at_10']:.3f}" for r in sets.values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {precision} |")
    cells = [f"{r['recall_at_1']['combined']['global']:.3f}" for r in sets.values()]
    if scale:
        cells.append(f"{scale['global']:.3f}")
    precision = " / ".join(f"{r['categories']['precision_at_10_global']:.3f}" for r in sets.values())
    lines.append("| the global k-NN alone | " + " | ".join(cells) + f" | {precision} |")
    queries = ", ".join(f"{which} {r['recall_at_1']['combined']['n']}" for which, r in sets.items())
    if scale:
        queries += f", at scale {scale['queries']}"
    lines += [
        "",
        f"Queries with three edits: {queries}; every edit type alone (recall@1, all edits): "
        + ", ".join(f"{which} {r['recall_at_1']['all']['reranked']:.3f}" for which, r in sets.items())
        + ".",
    ]
    return lines


def _costs(c):
    """What the stages after the global k-NN cost, what they store, and their false "copy" marks."""
    lines = []
    for which, r in c["sets"].items():
        lat, size = r["latency_ms"], r["bytes_per_image"]
        threshold = c["settings"].get("min_inliers", "10")
        marks = r["thresholds"].get(threshold) or r["thresholds"].get(int(threshold), {})
        false = marks.get("false_copy_unrelated", ["?", "?"])
        lines.append(
            f"- {which} set: the stages after the global k-NN took a median {lat['median']:.1f} ms a query (p95 "
            f"{lat['p95']:.1f}); each image stores {size['mean'] / 1024:.1f} kB of keypoints (at most "
            f"{size['max'] / 1024:.1f}), a {size['signature']}-byte signature and its visual words; false "
            f'"copy" marks among unrelated queries\' results: {false[0]} of {false[1]}.'
        )
    return lines


def _global_vector(q):
    untagged, reranked = q["untagged_kinds"], q["production_reranked"]
    rows = {v["variant"]: v for v in q["variants"]}
    production, gap = rows[q["production"]], q["variants"][0]
    return [
        f"- The global vector ({q['images']} labelled dev images): category precision@10 {production['precision_at_10']:.3f} "
        f"through the learned projection against {gap['precision_at_10']:.3f} raw (cross-fitted); kinds nobody tagged "
        f"{untagged['precision_at_10_production']:.3f} against {untagged['precision_at_10_gap']:.3f}. Copy recall@1 of "
        f"{q['copy_queries']} edited copies: {reranked['copy_recall_at_1']:.3f} through the whole ranking against "
        f"{gap['copy_recall_at_1']:.3f} by the raw global vector alone."
    ]


def _indexing(p):
    one = {r["local_features"]: r for r in p["runs"] if r["torch_threads"] == 1}
    if len(one) < 2:
        return []
    return [
        f"- Indexing (1 torch thread): {one[True]['ratio']:.2f}x of the bare forward pass with the copy evidence "
        f"extracted (keypoints at two sizes, signature, words), {one[False]['ratio']:.2f}x without it."
    ]


def _search(p):
    r = p["reranked"]
    added = r["median_ms"] - p["plain"]["median_ms"]
    return [
        f"- A search at {p['indexed']:,} images: the stages after the global k-NN add {added:+.1f} ms to the median "
        f"search (their own median {r.get('median_rerank_ms', 0):.1f} ms) against the global k-NN's "
        f"{r['median_query_ms']:.1f} ms."
    ]
