"""Copy detection: does an edited copy of an indexed picture bring back its original first?

    .venv/bin/python -m bench.copy_detection [--sets photo,mixed] [--limit 600] [--queries 30] [--combined-queries N] [--json out.json]

For each set of real images (photo: the tuxpaint and desktop-base pictures that look like photos, i.e. have
many distinct colours; mixed: a sample of tuxpaint, openclipart and desktop-base), it embeds every image with
the global model, builds edited copies (bench/copysets.py) and reports, in one run, recall@1 of the original
for global search alone (exact cosine over the whole set) and re-ranked as searches do: signatures compared
over the pool of global neighbours (workers/signature.py), local features verified for the first candidates,
the near duplicate and the images nearest in visual words (workers/localfeatures.py, workers/words.py: the
vocabulary learned from the set's own keypoints, as an index learns it), per edit type and overall, and by stage
(the "stages" table: the first k verified alone, as before signatures, then each addition). Also: the latency the re-ranking
adds per query (extract the query's features and signature, compare, unpack and verify, order), the bytes
stored per image, and how often a picture that is not the original is marked "copy": among the results of
unrelated images (same kind, not indexed) and of edited queries, for several inlier thresholds. Run it from the
repository root; the defaults take about 5 minutes on 2 busy cores, --queries 200 about 20. Last, the photo
set's combined-edit copies are searched again with --distractors other dev images indexed beside it (the
sets above hold a few hundred images; the ranking of a heavily edited copy degrades as the index grows).

The global search is average pooling of the raw embedding, what searches use below IMGSEARCH_PROJECTION_MIN_IMAGES
(1,000) indexed images, as for these sets; the at-scale index, larger, is searched through a projection learned from
it (app_projection), as the app's would be, with its copy space: learned from edited copies of 1,500 of the indexed
images (workers/edits.py, other edits than this benchmark's), it picks the lead of the candidates that are not
copies, and its COPY_CANDIDATES nearest are verified beside them. Recall is also split by the size of the original (its longer side),
because many of the "photos" here are stamps of 50 to 200 pixels whose edited copies are only a few dozen.
"""

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from bench.common import DEV_IMAGES, PROJECTION_MIN_IMAGES, RERANK_CANDIDATES
from bench.copysets import EDIT_TYPES, build_queries, load_original
from search import projection
from search.projection import COPY_CANDIDATES
from workers import localfeatures, signature, words
from workers.edits import COPY_PAIRS, edited
from workers.imageio import ImageDecodeError
FOLDERS = {"photo": ("tuxpaint", "desktop-base"), "mixed": ("tuxpaint", "openclipart", "desktop-base")}
THRESHOLDS = (6, 8, 10, 12, 15, 20, 30)
FUSION_WEIGHTS = (0.0, 0.01, 0.02, 0.03)  # cosine per sub-threshold inlier; 0: the lead by cosine and signature likeness
FUSION_CANDIDATES = (20, 30)


def photo_like(img):
    """A heuristic: photos have many distinct colours, drawings and smooth wallpapers few."""
    thumb = img.copy()
    thumb.thumbnail((128, 128))
    px = np.asarray(thumb) // 4
    codes = (px[..., 0].astype(np.int32) << 12) | (px[..., 1].astype(np.int32) << 6) | px[..., 2]
    return len(np.unique(codes)) >= 600


def thumb_vectors(img):
    """16x16 colour thumbnails of the image, its margins trimmed, and of its mirror image, for spotting duplicates."""
    small = trimmed(img).resize((16, 16), Image.Resampling.BOX)
    mirror = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return [np.asarray(t, np.float32).ravel() for t in (small, mirror)]


def trimmed(img):
    """The image without its margin: the rows and columns at its edges of the top-left pixel's colour (within 24 grey
    levels). The dev images hold some drawings twice, on canvases of other sizes (a tuxpaint stamp, an openclipart
    icon with more padding), which whole-canvas thumbnails did not match."""
    background = Image.new(img.mode, img.size, img.getpixel((0, 0)))
    box = ImageChops.difference(img, background).convert("L").point(lambda v: 255 if v > 24 else 0).getbbox()
    return img if box is None else img.crop(box)


def twin_of(thumbs, vectors):
    """Whether an image (its thumb_vectors) is the same picture as one of `thumbs` (rows of earlier images' first
    thumb vector): another size of it, on another canvas, or its mirror image. A set holds no two such files, since
    either would be a right answer to the other's copies (on distinct pictures the distance is far above 12: colour
    variants of one symbol 162, two flags of three stripes 89; on the same drawing twice 1 to 5)."""
    return bool(len(thumbs)) and min(np.sqrt(((thumbs - v) ** 2).mean(axis=1)).min() for v in vectors) < 12


def pick_images(root, which, limit, extra, seed, avoid=()):
    """(index, unrelated): up to `limit` distinct (path, image) pairs, and `extra` others of the same kind; none of
    them a twin (twin_of) of another or of an image in `avoid` (images another set already holds)."""
    files = sorted(p for folder in FOLDERS[which] for p in (root / folder).rglob("*") if p.suffix in (".png", ".jpg"))
    random.Random(seed).shuffle(files)
    chosen = []
    thumbs = np.array([thumb_vectors(img)[0] for img in avoid], np.float32).reshape(-1, 768)
    for path in files:
        try:
            img = load_original(path)
        except ImageDecodeError:  # the indexer skips these too (e.g. over the pixel limit)
            continue
        if which == "photo" and not photo_like(img):
            continue
        vectors = thumb_vectors(img)
        if twin_of(thumbs, vectors):
            continue
        chosen.append((path, img))
        thumbs = np.vstack([thumbs, vectors[0]])
        if len(chosen) == limit + extra:
            break
    # Too few for both (the photo set): hold `extra` back, but index at least half.
    split = min(limit, max(len(chosen) - extra, len(chosen) // 2))
    return chosen[:split], chosen[split:]


def combined_count(args):
    """Combined-edit queries per set: --combined-queries, else --queries like every other edit type."""
    return args.combined_queries or args.queries


def edited_queries(images, args):
    """--queries edited copies per single edit type, then combined_count(args) combinations of three (the first
    --queries of them are the same either way: build_queries picks and edits each query on its own)."""
    return (build_queries(images, args.queries, seed=args.seed, edits=EDIT_TYPES[:-1])
            + build_queries(images, combined_count(args), seed=args.seed, edits=("combined",)))


@dataclass
class GlobalIndex:
    """How the app's global search sees an index of these raw vectors: from PROJECTION_MIN_IMAGES images on, through
    a projection learned from the index (search/projection.py: its PCA part alone, as for an index nobody tagged,
    and the copy space), else raw."""

    raw: np.ndarray
    projection: object = None  # search.projection.Projection or None

    def __post_init__(self):
        self.vectors = self.queries(self.raw)
        self.copy = None if self.projection is None else self.projection.copy_vectors(self.raw)

    def queries(self, raw):
        """The vectors the index is searched with, of raw query vectors."""
        return raw if self.projection is None else self.projection.apply(raw)

    def copy_likeness(self, raw):
        """A raw query vector's cosine to every indexed image in the copy space, or None without one."""
        return None if self.copy is None else self.copy @ self.projection.copy_vectors(raw)[0]


def app_projection(embedder, raw, images):
    """The projection the app learns for an index of these images and raw vectors (None below PROJECTION_MIN_IMAGES):
    the PCA part, and the copy space from an edited copy of each of up to COPY_PAIRS of them, as
    workers.pipeline.projection_copy_pairs makes them."""
    if len(raw) < PROJECTION_MIN_IMAGES:
        return None
    rng = random.Random(0)
    picks = sorted(rng.sample(range(len(images)), min(COPY_PAIRS, len(images))))
    copies = embed_all(embedder, [edited(images[i], rng) for i in picks])
    fitted, _ = projection.fit(raw, [[] for _ in raw], copies=(raw[picks], copies))
    return fitted


def index_vectors(embedder, images):
    """The GlobalIndex of these images, as the app would search it."""
    raw = embed_all(embedder, images)
    return GlobalIndex(raw, app_projection(embedder, raw, images))


def embed_all(embedder, images, batch=32):
    """L2-normalised global embeddings, one row per image."""
    return np.concatenate([embedder.embed(images[i : i + batch])[0] for i in range(0, len(images), batch)])


@dataclass
class Searched:
    """What the searches of a query set looked at: per query its global top (best first), the candidates
    re-ranking may see (that top, plus the signature's near duplicate and the visual words' nearest when they were
    not in it) with their global scores, inliers and signature likeness to the query, the near duplicate's position
    (None), the ids the visual words found (and the likest signature), the seconds each search's re-ranking took, the
    candidates' copy-space likeness to the query (None without a copy space; see GlobalIndex), and the ids nearest
    the query in the copy space (COPY_CANDIDATES of them; none without one)."""

    top: np.ndarray
    candidates: list
    scores: list
    inliers: list
    likeness: list
    nears: list
    found: list
    seconds: list
    leads: list
    copy_found: list


def index_words(blobs):
    """(vocabulary, each image's words): the visual words an index of these local features learns and stores."""
    stored = [localfeatures.unpack(b) for b in blobs]
    vocabulary = words.learn_from(stored)
    return vocabulary, np.stack([words.aggregate(f, vocabulary) for f in stored])


def words_nearest(query, vocabulary_words):
    """The words.CANDIDATES images whose words are nearest the query's, as is or mirrored (exact here, HNSW in the
    app)."""
    vocabulary, matrix = vocabulary_words
    sims = np.max([matrix @ words.aggregate(query, vocabulary, mirrored=m) for m in (False, True)], axis=0)
    return np.argsort(-sims)[: words.CANDIDATES].tolist()


def found_in_index(query, likeness, vocabulary_words):
    """What a search verifies from the whole index beside its candidates (workers.pipeline._found_candidates): the
    images nearest in visual words, then the one whose signature is likest the query's (`likeness`: to each image)
    when below SIGNATURE_COPY."""
    lookalike = signature.lookalike(likeness)
    return list(dict.fromkeys(words_nearest(query, vocabulary_words) + ([] if lookalike is None else [lookalike])))


def verify_candidates(image, top, sims, blobs, signatures, vocabulary_words, args, copy_likeness=None):
    """(candidate ids, their global scores, inliers, signature likeness, the near duplicate's position or None, the
    ids found in the whole index (found_in_index), seconds, their copy-space likeness or None, the COPY_CANDIDATES
    ids nearest in the copy space) of one query (`copy_likeness`: GlobalIndex.copy_likeness of the query, to every
    indexed image).

    Timed, what a search does (workers/pipeline.py): extract the query's features and signature, find the best
    signature match, the nearest visual words and the nearest in the copy space in the whole index (`vocabulary_words`:
    index_words; exact here, HNSW in the app), verify the first k candidates, the near duplicate and the finds, order
    them. The candidates are the global top (wider than k, for the fusion table), then the near duplicate and the
    finds where they are not among them; those past k are verified once the clock has stopped."""
    started = time.perf_counter()
    query = localfeatures.extract(image)
    ids = top.tolist()
    query_signature = signature.compute(image)
    likeness = signature.similarities(query_signature, signatures)
    ids, near = signature.with_near_duplicate(ids, signature.best_match(likeness))
    found = found_in_index(query, likeness, vocabulary_words)
    copy_found = [] if copy_likeness is None else np.argsort(-copy_likeness)[:COPY_CANDIDATES].tolist()
    finds = list(dict.fromkeys(found + copy_found))
    ids += [i for i in finds if i not in ids]
    scores = [float(sims[i]) for i in ids]
    alike = signature.likeness(query_signature, list(signatures[ids]))
    leads = None if copy_likeness is None else [float(copy_likeness[i]) for i in ids]

    def load(wanted):
        return {i: localfeatures.unpack(blobs[i]) for i in wanted}

    searched, position, extra = candidates_at(ids, scores, near, args.k, finds)
    inliers = dict(zip((i for i, _ in searched), localfeatures.verify_all(searched, query, load)))
    likes = dict(zip(ids, alike))
    lead = None if leads is None else dict(zip(ids, leads))
    localfeatures.order(searched, [inliers[i] for i, _ in searched], near=position, min_inliers=args.min_inliers,
                        likeness=[likes[i] for i, _ in searched], verified_only=extra,
                        lead_scores=None if lead is None else [lead[i] for i, _ in searched])
    seconds = time.perf_counter() - started
    rest = [(i, s) for i, s in zip(ids, scores) if i not in inliers]
    inliers.update(zip((i for i, _ in rest), localfeatures.verify_all(rest, query, load)))
    return ids, scores, [inliers[i] or 0 for i in ids], alike, near, found, seconds, leads, copy_found


def candidates_at(ids, scores, near, k, found=()):
    """(the candidates a search with k global candidates re-ranks, the near duplicate's position among them, the
    positions of the visual words' finds): the first k, the near duplicate after them where it is not one of them
    (near None: none), then those of `found` (ids) that are neither."""
    candidates = list(zip(ids[:k], scores[:k]))
    if near is not None and near >= k:
        candidates.append((ids[near], scores[near]))
        near = k
    taken, start, score = {i for i, _ in candidates}, len(candidates), dict(zip(ids, scores))
    candidates += [(i, score[i]) for i in dict.fromkeys(found) if i not in taken]
    return candidates, near, frozenset(range(start, len(candidates)))


def search(embedder, images, index, blobs, signatures, vocabulary_words, args):
    """Searched for query images: the global top max(k, the fusion table's) and what re-ranking saw (`index`: the
    GlobalIndex, index_vectors; `vocabulary_words`: the visual words, index_words)."""
    raw = embed_all(embedder, images)
    sims = index.queries(raw) @ index.vectors.T
    top = np.argsort(-sims, axis=1)[:, : max(args.k, *FUSION_CANDIDATES)]
    results = [verify_candidates(img, t, row, blobs, signatures, vocabulary_words, args, index.copy_likeness(r))
               for img, t, row, r in zip(images, top, sims, raw)]
    return Searched(top, *(list(column) for column in zip(*results)))


# How a search's copy evidence was built up, for the "stages" table: (name, ranked_lists options). The last is what
# searches do.
STAGES = (("first k verified", {"near_duplicate": False, "alike": False, "found_by_words": False, "copy_space": False, "copy_finds": False}),
          ("+ signature near duplicate", {"near_duplicate": True, "alike": False, "found_by_words": False, "copy_space": False, "copy_finds": False}),
          ("+ signature likeness in picking the lead", {"near_duplicate": True, "alike": True, "found_by_words": False, "copy_space": False, "copy_finds": False}),
          ("+ whole-index finds (visual words' 5 nearest, the likest signature), verified or leading", {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": False, "copy_finds": False}),
          ("+ the lead picked in the projection's copy space, where it has one", {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": True, "copy_finds": False}),
          (f"+ the copy space's {COPY_CANDIDATES} nearest, verified or leading (production)", {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": True, "copy_finds": True}))


def ranked_lists(searched, min_inliers, weight=localfeatures.INLIER_WEIGHT, fused=RERANK_CANDIDATES,
                 near_duplicate=True, alike=True, found_by_words=True, copy_space=True, copy_finds=True):
    """Each query's results after localfeatures.order with `fused` global candidates: [(image_id, score, match)],
    best first. `near_duplicate` False ignores the signature's near duplicate, `alike` False its likeness to the
    candidates (both False: the evidence before signatures), `found_by_words` False the visual words' finds,
    `copy_space` False the copy space's likeness in picking the lead (the global score instead), `copy_finds` False
    the copy space's nearest."""
    out = []
    rows = zip(searched.candidates, searched.scores, searched.inliers, searched.likeness, searched.nears, searched.found,
               searched.leads, searched.copy_found)
    for ids, scores, inliers, likeness, near, found, leads, copy_found in rows:
        finds = (list(found) if found_by_words else []) + (list(copy_found) if copy_finds else [])
        candidates, position, extra = candidates_at(ids, scores, near if near_duplicate else None, fused, finds)
        counts, likes = dict(zip(ids, inliers)), dict(zip(ids, likeness))
        lead = None if leads is None or not copy_space else dict(zip(ids, leads))
        out.append(localfeatures.order(candidates, [counts[i] for i, _ in candidates], near=position,
                                       min_inliers=min_inliers, inlier_weight=weight,
                                       likeness=[likes[i] for i, _ in candidates] if alike else None,
                                       verified_only=extra,
                                       lead_scores=None if lead is None else [lead[i] for i, _ in candidates]))
    return out


def rerank_top1(searched, min_inliers, **options):
    """Each query's first result after re-ranking (see ranked_lists)."""
    return np.array([ranked[0][0] for ranked in ranked_lists(searched, min_inliers, **options)])


def evaluate(embedder, root, which, args):
    """Every number of the report for one image set."""
    index, unrelated = pick_images(root, which, args.limit, args.unrelated, args.seed)
    images = [img for _, img in index]
    started = time.perf_counter()
    blobs = [localfeatures.pack(localfeatures.extract(img)) for img in images]
    extract_ms = 1000 * (time.perf_counter() - started) / len(images)
    signatures = np.stack([signature.compute(img) for img in images])
    global_index = index_vectors(embedder, images)
    queries = edited_queries(images, args)
    vocabulary_words = index_words(blobs)
    searched = search(embedder, [q.image for q in queries], global_index, blobs, signatures, vocabulary_words, args)
    sources = np.array([q.source for q in queries])
    edits = np.array([q.edit for q in queries])
    u_searched = search(embedder, [img for _, img in unrelated], global_index, blobs, signatures, vocabulary_words, args)
    folders = np.array([path.parent.name for path, _ in index])
    query_folders = [p.parent.name for p, _ in unrelated]
    sides = np.array([max(images[q.source].size) for q in queries])
    seconds = searched.seconds
    return {
        "by_original_size": size_table(searched, sources, edits, sides, args),
        "images": len(images),
        "queries": len(queries),
        "recall_at_1": recall_table(searched, sources, edits, args),
        "stages": stage_table(searched, sources, edits, u_searched, folders, query_folders, args),
        "latency_ms": {"median": 1000 * statistics.median(seconds), "p95": 1000 * float(np.percentile(seconds, 95))},
        "bytes_per_image": {"mean": float(np.mean([len(b) for b in blobs])), "max": max(len(b) for b in blobs),
                            "signature": signature.DIM * 4},
        "index_extract_ms": extract_ms,
        "thresholds": threshold_table(searched, sources, u_searched, args),
        "fusion": fusion_table(searched, sources, edits, u_searched, folders, query_folders, args),
        "categories": category_check(folders, query_folders, u_searched, args),
    }


def evaluate_at_scale(embedder, root, args):
    """The photo set's combined-edit copies again, with `args.distractors` other dev images indexed beside it:
    recall@1 at each stage of STAGES, and where the original ranked globally; and the category precision@10 of
    --unrelated other images (not indexed), with and without the copy space picking the lead. The other sets index
    a few hundred images; a real index holds thousands, where a heavily edited copy falls further down the global
    ranking."""
    index, _ = pick_images(root, "photo", args.limit, 0, args.seed)
    originals = [img for _, img in index]
    others, unrelated = pick_images(root, "mixed", args.distractors, args.unrelated, args.seed + 1, avoid=originals)
    images = originals + [img for _, img in others]
    blobs = [localfeatures.pack(localfeatures.extract(img)) for img in images]
    signatures = np.stack([signature.compute(img) for img in images])
    global_index = index_vectors(embedder, images)
    queries = build_queries(originals, combined_count(args), seed=args.seed, edits=("combined",))
    vocabulary_words = index_words(blobs)
    searched = search(embedder, [q.image for q in queries], global_index, blobs, signatures, vocabulary_words, args)
    sources = np.array([q.source for q in queries])
    edits = np.array([q.edit for q in queries])
    stages = []
    for name, stage in STAGES:
        options = {"fused": args.k, **stage}
        stages.append({"stage": name, "combined": float((rerank_top1(searched, args.min_inliers, **options) == sources).mean())})
    top = searched.top
    sides = np.array([max(originals[q.source].size) for q in queries])
    u_searched = search(embedder, [img for _, img in unrelated], global_index, blobs, signatures, vocabulary_words, args)
    folders = np.array([path.parent.name for path, _ in index + others])
    query_folders = [path.parent.name for path, _ in unrelated]
    categories = {"unrelated": len(unrelated),
                  **category_check(folders, query_folders, u_searched, args),
                  "precision_at_10_reranked_without_copy_space": category_check(
                      folders, query_folders, u_searched, args, copy_space=False, copy_finds=False)["precision_at_10_reranked"]}
    return {"images": len(images), "photos": len(originals), "distractors": len(others), "queries": len(queries),
            "categories": categories,
            "projection": global_index.projection is not None, "copy_space": global_index.copy is not None,
            "by_original_size": size_table(searched, sources, edits, sides, args), "global": float((top[:, 0] == sources).mean()),
            "global_at_k": float((top[:, : args.k] == sources[:, None]).any(axis=1).mean()), "stages": stages,
            "edits": sorted(set(edits.tolist()))}


def recall_table(searched, sources, edits, args):
    """recall@1 (global, re-ranked) and the global recall@k ceiling per edit type, and overall."""
    top = searched.top
    rows = {"global": top[:, 0] == sources, "reranked": rerank_top1(searched, args.min_inliers, fused=args.k) == sources,
            "global_at_k": (top[:, : args.k] == sources[:, None]).any(axis=1)}
    table = {}
    for edit in [*EDIT_TYPES, "all"]:
        mask = edits == edit if edit != "all" else np.ones(len(edits), bool)
        if mask.any():
            table[edit] = {"n": int(mask.sum()), **{name: float(hit[mask].mean()) for name, hit in rows.items()}}
    return table


def stage_table(searched, sources, edits, u_searched, folders, query_folders, args):
    """recall@1 (combined edits, all edits) and unrelated queries' category precision@10 at each stage of STAGES."""
    table = []
    for name, stage in STAGES:
        options = {"fused": args.k, **stage}
        hits = rerank_top1(searched, args.min_inliers, **options) == sources
        cat = category_check(folders, query_folders, u_searched, args, **options)
        table.append({"stage": name, "combined": float(hits[edits == "combined"].mean()), "all": float(hits.mean()),
                      "precision_at_10": cat["precision_at_10_reranked"]})
    return table


SIZE_BANDS = (("< 128 px", 0, 128), ("128-255 px", 128, 256), (">= 256 px", 256, 10**9))


def size_table(searched, sources, edits, sides, args):
    """recall@1 (global, re-ranked) of all queries and of combined edits, by the original's longer side."""
    top = searched.top
    reranked = rerank_top1(searched, args.min_inliers, fused=args.k) == sources
    table = {}
    for name, low, high in SIZE_BANDS:
        band = (sides >= low) & (sides < high)
        for label, mask in (("all", band), ("combined", band & (edits == "combined"))):
            if mask.any():
                table.setdefault(name, {})[label] = {"n": int(mask.sum()), "global": float((top[mask, 0] == sources[mask]).mean()),
                                                     "reranked": float(reranked[mask].mean())}
    return table


def threshold_table(searched, sources, u_searched, args, thresholds=THRESHOLDS):
    """Per inlier threshold: recall@1, and how many results that are not the original are marked "copy"
    (verified or near duplicates), among edited queries' results and unrelated queries' results."""
    table = {}
    for th in thresholds:
        edited = ranked_lists(searched, th, fused=args.k)
        unrelated = ranked_lists(u_searched, th, fused=args.k)
        others = [[m for i, _, m in ranked if i != source] for ranked, source in zip(edited, sources.tolist())]
        marks = [[m for _, _, m in ranked] for ranked in unrelated]
        table[th] = {
            "recall_at_1": float(np.mean([ranked[0][0] == source for ranked, source in zip(edited, sources.tolist())])),
            "false_copy_edited": [sum(m.count("copy") for m in others), sum(len(m) for m in others)],
            "false_copy_unrelated": [sum(m.count("copy") for m in marks), sum(len(m) for m in marks)],
            "unrelated_queries_with_false_copy": [sum("copy" in m for m in marks), len(marks)],
        }
    return table


def fusion_table(searched, sources, edits, u_searched, folders, query_folders, args):
    """How the weight of sub-threshold inliers (localfeatures.INLIER_WEIGHT, which picks the lead of the candidates
    that are not copies) and the fused candidate count trade off.

    For each (candidates, weight): recall@1 of combined edits and of all queries, and the category precision@10
    of the unrelated queries after re-ranking (copies and the near duplicate enter from the whole pool in each).
    """
    table = []
    for k in FUSION_CANDIDATES:
        for weight in FUSION_WEIGHTS:
            hits = rerank_top1(searched, args.min_inliers, weight=weight, fused=k) == sources
            cat = category_check(folders, query_folders, u_searched, args, weight=weight, fused=k)
            table.append({"candidates": k, "weight": weight, "combined": float(hits[edits == "combined"].mean()),
                          "all": float(hits.mean()), "precision_at_10": cat["precision_at_10_reranked"]})
    return table


def category_check(folders, query_folders, u_searched, args, **options):
    """Folder-category precision@10 of unrelated queries: global order against re-ranked order."""
    options.setdefault("fused", args.k)
    top = u_searched.top
    before, after = [], []
    for folder, t, ranked in zip(query_folders, top, ranked_lists(u_searched, args.min_inliers, **options)):
        before.append((folders[t[:10]] == folder).mean())
        after.append((folders[[i for i, _, _ in ranked[:10]]] == folder).mean())
    return {"precision_at_10_global": float(np.mean(before)), "precision_at_10_reranked": float(np.mean(after))}


def print_report(which, result, args):
    """One table per set, then the cost, category and false-copy lines."""
    print(f"\n{which}: {result['images']} images, {result['queries']} queries, {args.k} candidates fused, "
          f"signatures over the whole set, min_inliers {args.min_inliers}, "
          f"keypoints (side, count) {localfeatures.SCALES}")
    print(f"{'edit':<10} {'n':>5} {'global@1':>9} {'rerank@1':>9} {f'global@{args.k}':>10}")
    for edit, row in result["recall_at_1"].items():
        print(f"{edit:<10} {row['n']:>5} {row['global']:>9.3f} {row['reranked']:>9.3f} {row['global_at_k']:>10.3f}")
    lat, size, cat = result["latency_ms"], result["bytes_per_image"], result["categories"]
    print(f"added latency per query: median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms; "
          f"stored {size['mean']:.0f} bytes/image (max {size['max']}) + a {size['signature']}-byte signature; "
          f"index-time extract {result['index_extract_ms']:.1f} ms/image")
    print(f"category precision@10 of unrelated queries: global {cat['precision_at_10_global']:.3f}, "
          f"re-ranked {cat['precision_at_10_reranked']:.3f}")
    for band, rows in result["by_original_size"].items():
        print(f"originals {band}: " + "; ".join(f"{label} n={r['n']} global {r['global']:.3f} re-ranked {r['reranked']:.3f}"
                                                 for label, r in rows.items()))
    print(f"{'inliers>=':>9} {'recall@1':>9} {'false copy (edited)':>20} {'false copy (unrelated)':>23} {'queries hit':>12}")
    for th, row in result["thresholds"].items():
        (fe, ne), (fu, nu) = row["false_copy_edited"], row["false_copy_unrelated"]
        qu, nq = row["unrelated_queries_with_false_copy"]
        print(f"{th:>9} {row['recall_at_1']:>9.3f} {f'{fe}/{ne}':>20} {f'{fu}/{nu}':>23} {f'{qu}/{nq}':>12}")
    print(f"{'stage':<45} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["stages"]:
        print(f"{row['stage']:<45} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}")
    print(f"{'candidates':>10} {'weight':>7} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["fusion"]:
        print(f"{row['candidates']:>10} {row['weight']:>7} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}")


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--sets", default="photo,mixed", help="comma-separated: photo, mixed")
    parser.add_argument("--limit", type=int, default=600, help="indexed images per set")
    parser.add_argument("--queries", type=count, default=30, help="edited queries per edit type (11 types)")
    parser.add_argument("--combined-queries", type=count, help="combined-edit queries per set (default: --queries); the "
                        "target's figure, so worth more queries than each single edit")
    parser.add_argument("--unrelated", type=int, default=100, help="non-indexed images for the false-copy rate")
    parser.add_argument("--k", type=int, default=RERANK_CANDIDATES, help="global candidates re-ranked")
    parser.add_argument("--min-inliers", type=int, default=localfeatures.MIN_INLIERS)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distractors", type=int, default=3000,
                        help="other dev images indexed beside the photo set for the at-scale check (0: skip it)")
    parser.add_argument("--scales", type=scales, default=localfeatures.SCALES,
                        help="SIFT sizes to try instead of the app's, as SIDE:KEYPOINTS,... (e.g. 192:256,96:128)")
    parser.add_argument("--json", type=Path)
    return parser


def count(text):
    """--queries, --combined-queries: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("give at least 1")
    return value


def scales(text):
    """--scales: "256:256,128:128" -> ((256, 256), (128, 128))."""
    try:
        pairs = tuple(tuple(int(n) for n in part.split(":")) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give SIDE:KEYPOINTS pairs, e.g. 256:256,128:128") from None
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError("give SIDE:KEYPOINTS pairs of positive numbers, e.g. 256:256,128:128")
    return pairs


def run(argv=()):
    """Every set's figures (the bench suite's "copies" part calls this with its own query count)."""
    import cv2
    import torch

    from bench.common import load_embedder

    args = parser().parse_args(list(argv))
    localfeatures.SCALES = args.scales  # this process only: what extract() uses for the index and the queries
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    embedder = load_embedder()
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "scales": localfeatures.SCALES,
              "inlier_weight": localfeatures.INLIER_WEIGHT, "signature_weight": localfeatures.SIGNATURE_WEIGHT,
              "words": words.WORDS, "word_candidates": words.CANDIDATES, "sets": {}}
    for which in args.sets.split(","):
        report["sets"][which] = evaluate(embedder, args.root, which, args)
        print_report(which, report["sets"][which], args)
    if args.distractors:
        scale = report["at_scale"] = evaluate_at_scale(embedder, args.root, args)
        print(f"\nphoto + {scale['distractors']} other images ({scale['images']} indexed), {scale['queries']} combined-edit "
              f"copies: global R@1 {scale['global']:.3f}, original in the global top {args.k} {scale['global_at_k']:.3f}")
        for row in scale["stages"]:
            print(f"  {row['stage']:<45} combined R@1 {row['combined']:.3f}")
        for band, rows in scale["by_original_size"].items():
            r = rows["combined"]
            print(f"  originals {band}: n={r['n']} global {r['global']:.3f} re-ranked {r['reranked']:.3f}")
    return report


def main():
    report = run(sys.argv[1:])
    out = parser().parse_args().json
    if out:
        out.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
