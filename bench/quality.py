"""Retrieval quality of global descriptors: average pooling (GAP) against GeM, PCA-whitening, alpha-QE and the
production projection (workers/projection.py: learned PCA plus tag-supervised LDA), in one run.

On a labelled subset of the dev images (category = `<source>/<top folder>`): category precision@10 and mAP,
leave-one-out, and copy-detection recall@1 of edited copies (bench/copysets.py) against the same index, for
the global descriptor alone and ranked by the app itself (workers/ranking, over an index built as the app builds it).

The projection learns from the tags `index_images --tags-from-folders` gives (`<source>` and `<top folder>`).
It is cross-fitted: the index is cut into 5 folds and each fold's queries are ranked by a projection learned
with that fold's tags hidden, so no query's own tag is ever learned from. A second check hides the tags of
half the categories altogether and ranks only their images: what a kind of image nobody tagged gets.
Everything is computed from one forward pass per image; the production embedder is not changed.
"""

import random

import numpy as np

from bench.common import CACHE, DEV_IMAGES, RERANK_CANDIDATES, labelled_subset, load_embedder, timed
from bench.copysets import build_queries, load_original
from workers import projection

GEM_P = 3.0
SHRINK = (
    10.0  # whitening divides by sqrt(eigenvalue + SHRINK * mean eigenvalue); 10 beat 0.1 and 1 (P@10) on the dev set
)
QE = {"alpha": 3.0, "n": 3}  # n=3 was best of 2, 3, 5, 10 on the dev set
PRODUCTION = "GAP + learned PCA256 + tag LDA128 (production)"
VARIANTS = (  # (name, descriptor, whitening dims, "pca" or "production" (workers/projection.py), or None; query expansion)
    ("GAP (baseline)", "gap", None, False),
    ("GeM p=3", "gem", None, False),
    ("multi-scale GeM", "msgem", None, False),
    ("GAP + PCAw128", "gap", 128, False),
    ("GAP + PCAw512", "gap", 512, False),
    ("GeM + PCAw128", "gem", 128, False),
    ("GeM + PCAw512", "gem", 512, False),
    ("GAP + aQE", "gap", None, True),
    ("GeM + aQE", "gem", None, True),
    ("GAP + PCAw128 + aQE", "gap", 128, True),
    ("GeM + PCAw128 + aQE", "gem", 128, True),
    ("multi-scale GeM + PCAw128", "msgem", 128, False),
    ("multi-scale GeM + PCAw128 + aQE", "msgem", 128, True),
    ("GAP + learned PCA256 (no tags)", "gap", "pca", False),
    (PRODUCTION, "gap", "production", False),
    ("GAP + learned PCA256 + tag LDA128 + aQE", "gap", "production", True),
    ("GeM + learned PCA256 + tag LDA128", "gem", "production", False),
)
FOLDS = 5


def pooled(embedder, batch):
    """{"gap", "gem", "msgem"} pooled descriptors (numpy) of a preprocessed batch; mobilenet-style nets only."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        fmap = embedder.net.features(batch)
        gap = fmap.mean(dim=(2, 3))
        gem = _gem(fmap)
        small = F.interpolate(batch, scale_factor=2**-0.5, mode="bilinear", align_corners=False, antialias=True)
        msgem = F.normalize(gem, dim=1) + F.normalize(_gem(embedder.net.features(small)), dim=1)
    return {"gap": gap.numpy(), "gem": gem.numpy(), "msgem": msgem.numpy()}


def _gem(fmap):
    """Generalised-mean pooling: (mean of x^p)^(1/p) per channel."""
    return fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1 / GEM_P)


def describe(embedder, images, batch_size=32):
    """Pooled descriptors of PIL images, batch by batch: {"gap": (N, D), ...}."""
    import torch

    parts = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([embedder.preprocess(img) for img in images[start : start + batch_size]])
        parts.append(pooled(embedder, batch))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def describe_files(embedder, paths, batch_size=32):
    """Descriptors of image files, decoded as the indexer decodes them (4 threads), batch by batch."""
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    from workers.imageio import load_rgb

    decode = partial(load_rgb, target_size=embedder.resize_size)
    parts = []
    with ThreadPoolExecutor(4) as pool:
        for start in range(0, len(paths), batch_size):
            parts.append(describe(embedder, list(pool.map(decode, paths[start : start + batch_size])), batch_size))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def cached_describe_files(embedder, paths):
    """describe_files, kept in .local/bench keyed by model and file list, so a rerun skips the slow decoding."""
    import hashlib

    key = hashlib.sha256("\n".join([embedder.key, *map(str, paths)]).encode()).hexdigest()[:16]
    path = CACHE / f"descriptors-{key}.npz"
    if path.is_file():
        return dict(np.load(path)), True
    desc = describe_files(embedder, paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **desc)
    return desc, False


def l2n(x):
    """Rows scaled to unit length."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def learn_whitening(index, dims):
    """(mean, matrix) of PCA-whitening with shrinkage, learned on the index descriptors."""
    mean = index.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(index - mean, rowvar=False))
    order = np.argsort(values)[::-1][:dims]
    values, vectors = values[order], vectors[:, order]
    scale = 1 / np.sqrt(values + SHRINK * values.mean())
    return mean, (vectors * scale).astype(np.float32)


def whiten(x, mean, matrix):
    """Project L2-normalised descriptors and re-normalise."""
    return l2n((x - mean) @ matrix)


def expand(queries, index, exclude=None):
    """alpha-QE: each query plus its top-n index neighbours weighted by similarity^alpha, re-normalised."""
    sims = queries @ index.T
    if exclude is not None:
        sims[np.arange(len(queries)), exclude] = -np.inf
    top = np.argpartition(-sims, QE["n"], axis=1)[:, : QE["n"]]
    weights = np.clip(np.take_along_axis(sims, top, axis=1), 0, None) ** QE["alpha"]
    return l2n(queries + np.einsum("qn,qnd->qd", weights, index[top]))


def category_scores(index, labels, qe, own=None):
    """Leave-one-out precision@10 and average precision per query (the index images `own`, default all)."""
    own = np.arange(len(index)) if own is None else own
    queries = expand(index[own], index, exclude=own) if qe else index[own]
    sims = queries @ index.T
    sims[np.arange(len(own)), own] = -np.inf  # the query itself is never an answer
    ranked = labels[np.argsort(-sims, axis=1)[:, :-1]] == labels[own][:, None]
    hits = np.cumsum(ranked, axis=1)
    relevant = np.maximum(ranked.sum(axis=1), 1)
    ap = (ranked * hits / np.arange(1, ranked.shape[1] + 1)).sum(axis=1) / relevant
    return ranked[:, :10].mean(axis=1), ap


def learned(index, tags, queries=None):
    """(index, queries) through a production projection learned from the index and the given tags."""
    fitted, _ = projection.fit(index, tags, min_images=2)
    return fitted.apply(index), None if queries is None else fitted.apply(queries)


def crossfit_scores(index, tags, labels, qe, folds=FOLDS, seed=0):
    """Per-query precision@10 and AP where each fold's queries were ranked with that fold's tags hidden."""
    fold = np.random.default_rng(seed).integers(0, folds, len(index))
    p10, ap = np.zeros(len(index)), np.zeros(len(index))
    for f in range(folds):
        own = np.nonzero(fold == f)[0]
        hidden = [[] if fold[i] == f else t for i, t in enumerate(tags)]
        p10[own], ap[own] = category_scores(learned(index, hidden)[0], labels, qe, own)
    return p10, ap


def untagged_kinds(index, tags, labels, seed=0):
    """P@10 of the images of half the categories, their folder tags hidden from learning: GAP against production."""
    categories = sorted(set(labels.tolist()))
    hidden_kinds = set(random.Random(seed).sample(categories, len(categories) // 2))
    hidden = [[t for t in image_tags if f"{image_tags[0]}/{t}" not in hidden_kinds] for image_tags in tags]
    own = np.array([i for i, c in enumerate(labels) if c in hidden_kinds])
    gap = category_scores(index, labels, False, own)[0].mean()
    production = category_scores(learned(index, hidden)[0], labels, False, own)[0].mean()
    return {
        "categories": len(hidden_kinds),
        "images": len(own),
        "precision_at_10_gap": round(float(gap), 4),
        "precision_at_10_production": round(float(production), 4),
    }


def copy_recall(queries, index, sources, qe):
    """Recall@1 of the original among the whole index, per query."""
    if qe:
        queries = expand(queries, index)
    return (np.argmax(queries @ index.T, axis=1) == sources).astype(float)


def variant_scores(desc, labels, tags, copies, sources, edits, spec):
    """Category and copy-detection figures of one (descriptor, whitening or projection, QE) variant."""
    _, kind, dims, qe = spec
    index, queries = l2n(desc[kind]), l2n(copies[kind])
    if dims == "production":
        p10, ap = crossfit_scores(index, tags, labels, qe)
        index, queries = learned(index, tags, queries)  # copies: the whole index tagged, the queries new images
    elif dims == "pca":
        index, queries = learned(index, [[] for _ in tags], queries)
        p10, ap = category_scores(index, labels, qe)
    else:
        if dims:
            mean, whitening = learn_whitening(index, dims)
            index, queries = whiten(index, mean, whitening), whiten(queries, mean, whitening)
        p10, ap = category_scores(index, labels, qe)
    hits = copy_recall(queries, index, sources, qe)
    per_edit = {e: round(float(hits[edits == e].mean()), 4) for e in sorted(set(edits))}
    return {
        "precision_at_10": float(p10.mean()),
        "map": float(ap.mean()),
        "copy_recall_at_1": float(hits.mean()),
        "copy_recall_by_edit": per_edit,
    }


def reranked_copy_recall(index, queries, paths, images, sources, edits, tags, embedder, k=RERANK_CANDIDATES):
    """Copy recall@1 of the app's whole ranking (workers/ranking) over the subset indexed as the app indexes it
    (bench/appindex.py: the raw vectors `index`, the copy evidence of each image, the visual words, and the projection
    the app learns at this size from the given tags, with its copy space), for the edited copies `images` with their
    raw vectors `queries`; and the ms its stages after the global k-NN took per query."""
    from bench.appindex import KNN_STAGE, AppIndex
    from workers.imageio import load_rgb

    decoded = [load_rgb(path, target_size=256) for path in paths]  # as the indexer decodes them
    app = AppIndex.build(embedder, decoded, index, tags=tags, projection=True, names=[p.name for p in paths])
    searched = app.search(images, queries, k=k, wanted=(k,))
    firsts = [app.position[s.first.results[0][0]] if s.first.results else -1 for s in searched]
    seconds = [sum(ms for stage, ms in s.timings.items() if stage != KNN_STAGE) for s in searched]
    hits = np.array(firsts) == sources
    per_edit = {e: round(float(hits[edits == e].mean()), 4) for e in sorted(set(edits))}
    return {
        "copy_recall_at_1": float(hits.mean()),
        "copy_recall_by_edit": per_edit,
        "candidates": k,
        "rerank_ms_median": round(float(np.median(seconds)), 1),
    }


def copy_queries(paths, count_per_edit, seed=0):
    """(edited PIL images, index of the original in `paths`, edit names) for a few hundred originals."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(paths)), min(len(paths), 300))
    queries = build_queries([load_original(paths[i]) for i in picks], per_edit=count_per_edit, seed=seed)
    return [q.image for q in queries], np.array([picks[q.source] for q in queries]), np.array([q.edit for q in queries])


def folder_tags(path):
    """The tags `index_images --tags-from-folders` gives a dev image: its source and top folder."""
    return [part.lower() for part in path.relative_to(DEV_IMAGES).parts[:2]]


def run(max_images=1200, per_edit=30, seeds_path=None):
    """All variants on one labelled subset; returns the report part and saves k-NN seeds (raw vectors, tags, projection)."""
    embedder = load_embedder()
    subset = labelled_subset(max_images)
    paths, labels = [p for p, _ in subset], np.array([c for _, c in subset])
    tags = [folder_tags(p) for p in paths]
    (desc, cached), index_s = timed(cached_describe_files, embedder, paths)
    (images, sources, edits), _ = timed(copy_queries, paths, per_edit)
    copies, query_s = timed(describe, embedder, images)
    save_seeds(seeds_path or CACHE / "seeds.npy", l2n(desc["gap"]), tags)
    rows = []
    for spec in VARIANTS:
        scores = variant_scores(desc, labels, tags, copies, sources, edits, spec)
        rows.append(
            {"variant": spec[0], **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}}
        )
        print(
            f"  {spec[0]:44s} P@10 {scores['precision_at_10']:.3f}  mAP {scores['map']:.3f}  "
            f"copy R@1 {scores['copy_recall_at_1']:.3f}",
            flush=True,
        )
    reranked = reranked_copy_recall(l2n(desc["gap"]), l2n(copies["gap"]), paths, images, sources, edits, tags, embedder)
    print(f"  production + local-feature re-ranking: copy R@1 {reranked['copy_recall_at_1']:.3f}", flush=True)
    return {
        "model": embedder.key,
        "images": len(paths),
        "categories": len(set(labels)),
        "copy_queries": len(images),
        "copy_edits": sorted(set(edits.tolist())),
        "gem_p": GEM_P,
        "whitening_shrinkage": SHRINK,
        "alpha_qe": QE,
        "projection": {
            "pca_dims": projection.PCA_DIMS,
            "lda_dims": projection.LDA_DIMS,
            "beta": projection.BETA,
            "folds": FOLDS,
            "tags": "source and top folder, as index_images --tags-from-folders",
        },
        "describe_index_s": round(index_s, 1),
        "descriptors_from_cache": cached,
        "describe_queries_s": round(query_s, 1),
        "seeds": str(seeds_path),
        "variants": rows,
        "best": best_variant(rows),
        "production": PRODUCTION,
        "untagged_kinds": untagged_kinds(l2n(desc["gap"]), tags, labels),
        "production_reranked": reranked,
    }


def save_seeds(path, vectors, tags):
    """Raw vectors and their tags for the scale benchmarks, and the production projection learned from them."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    path.with_suffix(".tags.json").write_text(json.dumps(tags))
    fitted, _ = projection.fit(vectors, tags, min_images=2)
    path.with_suffix(".projection.npz").write_bytes(fitted.dumps())


def best_variant(rows):
    """The variant with the best category precision@10 among those keeping copy recall@1 within 1 point of GAP's."""
    base = rows[0]
    eligible = [r for r in rows if r["copy_recall_at_1"] >= base["copy_recall_at_1"] - 0.01] or rows
    best = max(eligible, key=lambda r: (r["precision_at_10"], r["map"]))
    return {
        "variant": best["variant"],
        "precision_at_10_gain_points": round(100 * (best["precision_at_10"] - base["precision_at_10"]), 1),
        "map_gain_points": round(100 * (best["map"] - base["map"]), 1),
        "copy_recall_gain_points": round(100 * (best["copy_recall_at_1"] - base["copy_recall_at_1"]), 1),
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1200), indent=2))
