"""Retrieval quality of global descriptors: GAP (production) against GeM, PCA-whitening and alpha-QE, in one run.

On a labelled subset of the dev images (category = `<source>/<top folder>`): category precision@10 and mAP,
leave-one-out, and copy-detection recall@1 of edited copies (bench/copysets.py) against the same index.
Everything is computed from one forward pass per image; the production embedder is not changed.
"""

import random

import numpy as np

from bench.common import CACHE, labelled_subset, load_embedder, timed
from bench.copysets import build_queries, load_original

GEM_P = 3.0
SHRINK = 10.0  # whitening divides by sqrt(eigenvalue + SHRINK * mean eigenvalue); 10 beat 0.1 and 1 (P@10) on the dev set
QE = {"alpha": 3.0, "n": 3}  # n=3 was best of 2, 3, 5, 10 on the dev set
VARIANTS = (  # (name, descriptor, whitening dims or None, query expansion)
    ("GAP (baseline)", "gap", None, False), ("GeM p=3", "gem", None, False), ("multi-scale GeM", "msgem", None, False),
    ("GAP + PCAw128", "gap", 128, False), ("GAP + PCAw512", "gap", 512, False), ("GeM + PCAw128", "gem", 128, False),
    ("GeM + PCAw512", "gem", 512, False), ("GAP + aQE", "gap", None, True), ("GeM + aQE", "gem", None, True),
    ("GAP + PCAw128 + aQE", "gap", 128, True), ("GeM + PCAw128 + aQE", "gem", 128, True),
    ("multi-scale GeM + PCAw128", "msgem", 128, False), ("multi-scale GeM + PCAw128 + aQE", "msgem", 128, True),
)


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
    """(mean, projection) of PCA-whitening with shrinkage, learned on the index descriptors."""
    mean = index.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(index - mean, rowvar=False))
    order = np.argsort(values)[::-1][:dims]
    values, vectors = values[order], vectors[:, order]
    scale = 1 / np.sqrt(values + SHRINK * values.mean())
    return mean, (vectors * scale).astype(np.float32)


def whiten(x, mean, projection):
    """Project L2-normalised descriptors and re-normalise."""
    return l2n((x - mean) @ projection)


def expand(queries, index, exclude=None):
    """alpha-QE: each query plus its top-n index neighbours weighted by similarity^alpha, re-normalised."""
    sims = queries @ index.T
    if exclude is not None:
        sims[np.arange(len(queries)), exclude] = -np.inf
    top = np.argpartition(-sims, QE["n"], axis=1)[:, : QE["n"]]
    weights = np.clip(np.take_along_axis(sims, top, axis=1), 0, None) ** QE["alpha"]
    return l2n(queries + np.einsum("qn,qnd->qd", weights, index[top]))


def category_scores(index, labels, qe):
    """Leave-one-out precision@10 and mAP over the index, categories as ground truth."""
    own = np.arange(len(index))
    queries = expand(index, index, exclude=own) if qe else index
    sims = queries @ index.T
    sims[own, own] = -np.inf  # the query itself is never an answer
    ranked = labels[np.argsort(-sims, axis=1)[:, :-1]] == labels[:, None]
    hits = np.cumsum(ranked, axis=1)
    relevant = np.maximum(ranked.sum(axis=1), 1)
    ap = (ranked * hits / np.arange(1, ranked.shape[1] + 1)).sum(axis=1) / relevant
    return {"precision_at_10": float(ranked[:, :10].mean()), "map": float(ap.mean())}


def copy_recall(queries, index, sources, qe):
    """Recall@1 of the original among the whole index, per query."""
    if qe:
        queries = expand(queries, index)
    return (np.argmax(queries @ index.T, axis=1) == sources).astype(float)


def variant_scores(desc, labels, copies, sources, edits, spec):
    """Category and copy-detection figures of one (descriptor, whitening, QE) variant."""
    _, kind, dims, qe = spec
    index, queries = l2n(desc[kind]), l2n(copies[kind])
    if dims:
        mean, projection = learn_whitening(index, dims)
        index, queries = whiten(index, mean, projection), whiten(queries, mean, projection)
    hits = copy_recall(queries, index, sources, qe)
    per_edit = {e: round(float(hits[edits == e].mean()), 4) for e in sorted(set(edits))}
    return {**category_scores(index, labels, qe), "copy_recall_at_1": float(hits.mean()), "copy_recall_by_edit": per_edit}


def copy_queries(paths, count_per_edit, seed=0):
    """(edited PIL images, index of the original in `paths`, edit names) for a few hundred originals."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(paths)), min(len(paths), 300))
    queries = build_queries([load_original(paths[i]) for i in picks], per_edit=count_per_edit, seed=seed)
    return [q.image for q in queries], np.array([picks[q.source] for q in queries]), np.array([q.edit for q in queries])


def run(max_images=1200, per_edit=30, seeds_path=None):
    """All variants on one labelled subset; returns the report part and saves the GAP vectors as k-NN seeds."""
    embedder = load_embedder()
    subset = labelled_subset(max_images)
    paths, labels = [p for p, _ in subset], np.array([c for _, c in subset])
    (desc, cached), index_s = timed(cached_describe_files, embedder, paths)
    (images, sources, edits), _ = timed(copy_queries, paths, per_edit)
    copies, query_s = timed(describe, embedder, images)
    seeds_path = seeds_path or CACHE / "seeds.npy"
    seeds_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(seeds_path, l2n(desc["gap"]).astype(np.float32))
    rows = []
    for spec in VARIANTS:
        scores = variant_scores(desc, labels, copies, sources, edits, spec)
        rows.append({"variant": spec[0], **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}})
        print(f"  {spec[0]:34s} P@10 {scores['precision_at_10']:.3f}  mAP {scores['map']:.3f}  "
              f"copy R@1 {scores['copy_recall_at_1']:.3f}", flush=True)
    return {
        "model": embedder.key, "images": len(paths), "categories": len(set(labels)), "copy_queries": len(images),
        "copy_edits": sorted(set(edits.tolist())), "gem_p": GEM_P, "whitening_shrinkage": SHRINK, "alpha_qe": QE,
        "describe_index_s": round(index_s, 1), "descriptors_from_cache": cached, "describe_queries_s": round(query_s, 1), "seeds": str(seeds_path),
        "variants": rows, "best": best_variant(rows),
    }


def best_variant(rows):
    """The variant with the best category precision@10 among those keeping copy recall@1 within 1 point of GAP's."""
    base = rows[0]
    eligible = [r for r in rows if r["copy_recall_at_1"] >= base["copy_recall_at_1"] - 0.01] or rows
    best = max(eligible, key=lambda r: (r["precision_at_10"], r["map"]))
    return {"variant": best["variant"], "precision_at_10_gain_points": round(100 * (best["precision_at_10"] - base["precision_at_10"]), 1),
            "map_gain_points": round(100 * (best["map"] - base["map"]), 1),
            "copy_recall_gain_points": round(100 * (best["copy_recall_at_1"] - base["copy_recall_at_1"]), 1)}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1200), indent=2))
