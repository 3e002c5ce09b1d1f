"""The "Same picture" badge: how often the ranking marks a result "copy" for a query that is no copy of anything
indexed, and how often copies of indexed pictures keep their badge, in one run.

    .venv/bin/python -m imgsearch.embedded exec -- .venv/bin/python -m bench.badges [--evidence out.json]

One index, built as the app builds it (bench/appindex.py): drawings and symbols of the dev images (openclipart's signs
and symbols, shapes and geography, tuxpaint's symbols: flags, arrows, card suits, moon phases, clocks, road signs)
and EmojiOne's emoji (bench/emoji.py). Queries that are copies of nothing indexed:
- photos: the real photographs of ../shared/data/fetch-dev-photos (none of them is indexed);
- drawings and symbols: the drawings of those folders that are alone in their family (a file name without its digits:
  the twelve clocks of one drawing are one family), half of them indexed and the other half queried, none a twin of
  an indexed image (the same drawing at another size, on another canvas, turned or mirrored: bench/copysets.py's
  twin test over the 8 turns);
- variants of indexed drawings: the families of more files (the clock at another hour, the star polygon of another
  step, the signal flag of another letter) put half their files in the index and query with the other half, none a
  twin of an indexed image: the hardest case, since a family shares its frame and its strokes;
- other artwork of the same subject: Google's Noto rendering of the indexed emoji. A badge on EmojiOne's artwork of
  the same emoji is counted apart ("same emoji"): a flag is a flag, some symbols are drawn alike; a badge on any
  other image is false.
A badge between two drawings of one flag by different hands (bench/same_design.txt, checked by eye) is counted apart
too ("same design"), as the issue counts them.
Copies: combinations of three edits (bench/copysets.py) of indexed images: recall@1 and how many keep their badge.
"""

import argparse
import random
import re
from pathlib import Path

import numpy as np

from bench import benchdb
from bench.common import DEV_IMAGES, run_and_save
from bench.copysets import build_queries, dev_photos, load_original, thumb_vectors, twin_of

benchdb.use_once()  # the app's modules below need Django, on the bench database

from bench import emoji
from bench.appindex import AppIndex
from bench.copy_detection import embed_all
from workers.imageio import ImageDecodeError

DRAWINGS = ("openclipart/signs_and_symbols", "openclipart/shapes", "openclipart/geography", "tuxpaint/symbols")
PER_FAMILY = 16  # files of one family at most: one generator's 1,375 star polygons would otherwise be half the set
SAME_DESIGN = Path(__file__).with_name("same_design.txt")


def design_groups(path=SAME_DESIGN):
    """{file name: its group's number} of the files that draw one design by different hands (bench/same_design.txt)."""
    groups = {}
    for number, line in enumerate(path.read_text().splitlines()):
        if line.strip() and not line.startswith("#"):
            groups.update({f"{name}.png": number for name in line.split()})
    return groups


def family(path):
    """A drawing's family: its file name without digits (clocks_clock01 .. 12, arrows_arrow01_1 .. 4 are one)."""
    return re.sub(r"[\d_.-]+", "_", path.stem).strip("_")


def drawings(root, per_side, seed):
    """(indexed, held out, variants): (path, image) pairs of the drawing folders. A family of one file goes to the
    index or to the held-out drawings, one of each in turn; a family of more (at most PER_FAMILY of its files, chosen
    at random) puts half its files in the index and the others in the variants. No held-out drawing or variant is a
    twin of an indexed image in any of the 8 turns and mirrorings, and no two indexed images are twins."""
    files = sorted(p for folder in DRAWINGS for p in (root / folder).glob("*.png"))
    members = {}
    for path in files:
        members.setdefault(family(path), []).append(path)
    rng = random.Random(seed)
    singles = sorted(name for name, paths in members.items() if len(paths) == 1)
    rng.shuffle(singles)
    side = {members[name][0]: n % 2 for n, name in enumerate(singles)}  # 0 indexed, 1 held out, 2 a variant
    for name in sorted(name for name, paths in members.items() if len(paths) > 1):
        paths = rng.sample(members[name], min(PER_FAMILY, len(members[name])))
        side.update({path: 0 if n < (len(paths) + 1) // 2 else 2 for n, path in enumerate(paths)})
    indexed, held_out, variants, thumbs = [], [], [], np.zeros((0, 768), np.float32)
    for path in sorted(side, key=lambda p: (side[p], p)):  # the indexed images first
        try:
            img = load_original(path)
        except ImageDecodeError:
            continue
        views = thumb_vectors(img, turns=True)
        if side[path] == 0 and len(indexed) < per_side:
            if not twin_of(thumbs, views):  # no two files of one picture in the index either
                indexed.append((path, img))
                thumbs = np.vstack([thumbs, views[0]])
        elif side[path] and not twin_of(thumbs, views):
            (held_out if side[path] == 1 else variants).append((path, img))
    pick = random.Random(seed)
    return (
        indexed,
        pick.sample(held_out, min(per_side, len(held_out))),
        pick.sample(variants, min(per_side, len(variants))),
    )


def emoji_pairs(count, seed):
    """[(emoji, EmojiOne image, Noto image)] of `count` emoji both vendors draw, chosen at random."""
    noto, pairs = emoji.Noto(), []
    chosen = list(emoji.emojione().items())
    random.Random(seed).shuffle(chosen)
    for text, path in chosen:
        other = noto.render(text)
        if other is not None:
            pairs.append((text, load_original(path), other))
            if len(pairs) == count:
                break
    return pairs


def codepoints(text):
    return "-".join(f"{ord(c):x}" for c in text)


def same_subject(query_name, indexed_name, groups):
    """Whether a badge of the indexed image on the query is counted apart from the false ones: the same emoji in the
    other vendor's artwork, or one design by different hands (`groups`: design_groups())."""
    if query_name.startswith("noto-"):
        return indexed_name == "emojione-" + query_name.removeprefix("noto-")
    return groups.get(query_name, -1) == groups.get(indexed_name, -2)


def badges(searched, index, query_names, names, groups):
    """[(query number, position, whether the same subject)] of every result marked "copy" among the queries'
    results; `names`: the indexed images' file names, by position."""
    found = []
    for number, one in enumerate(searched):
        for image_id, _, match in one.first.results:
            if match == "copy":
                position = index.position[image_id]
                found.append((number, position, same_subject(query_names[number], names[position], groups)))
    return found


def run(argv=()):
    args = parser().parse_args(list(argv))
    import torch

    from bench.common import load_embedder

    torch.set_num_threads(args.threads)
    embedder = load_embedder()
    indexed, held_out, variants = drawings(args.root, args.drawings, args.seed)
    pairs = emoji_pairs(args.emoji, args.seed)
    images = [img for _, img in indexed] + [one for _, one, _ in pairs]
    names = [p.name for p, _ in indexed] + [f"emojione-{codepoints(text)}.png" for text, _, _ in pairs]
    app = AppIndex.build(embedder, images, embed_all(embedder, images), names=names)
    copies = build_queries(images, args.copies, seed=args.seed, edits=("combined",))
    photo_set, groups = dev_photos(), design_groups()
    sets = {
        "photos": ([img for _, img in photo_set], [p.name for p, _ in photo_set]),
        "drawings and symbols": ([img for _, img in held_out], [p.name for p, _ in held_out]),
        "variants of indexed drawings": ([img for _, img in variants], [p.name for p, _ in variants]),
        "other artwork of the same subject": (
            [other for _, _, other in pairs],
            [f"noto-{codepoints(text)}.png" for text, _, _ in pairs],
        ),
    }
    report = {
        "indexed": {"drawings": len(indexed), "emoji": len(pairs), "projection": app.space.projection is not None},
        "sets": {},
    }
    for name, (queries, query_names) in sets.items():
        searched = app.search(queries, embed_all(embedder, queries))
        found = badges(searched, app, query_names, names, groups)
        false = [b for b in found if not b[2]]
        report["sets"][name] = {
            "queries": len(queries),
            "badges": len(found),
            "false": len(false),
            "queries_with_false": len({number for number, _, _ in false}),
            "per_1000_queries": round(1000 * len({number for number, _, _ in false}) / len(queries), 1),
            "same_subject": len(found) - len(false),
            "false_pairs": [f"{query_names[number]} -> {names[position]}" for number, position, _ in false[:50]],
            "same_pairs": [f"{query_names[n]} -> {names[position]}" for n, position, same in found if same][:50],
        }
    searched = app.search([q.image for q in copies], embed_all(embedder, [q.image for q in copies]))
    firsts = [app.position[s.first.results[0][0]] if s.first.results else -1 for s in searched]
    kept = [s.first.results[0][2] == "copy" for s in searched if s.first.results]
    sources = [q.source for q in copies]
    report["copies"] = {
        "queries": len(copies),
        "recall_at_1": float(np.mean(np.array(firsts) == sources)),
        "badged_at_1": float(np.mean([k and f == s for k, f, s in zip(kept, firsts, sources)])),
    }
    for name, r in report["sets"].items():
        print(
            f"  {name}: {r['queries']} queries, {r['false']} false badges on {r['queries_with_false']} queries "
            f"({r['per_1000_queries']} per 1,000 queries); {r['same_subject']} on the same subject's other artwork"
            " or the same design"
        )
        for pair in r["false_pairs"]:
            print(f"    {pair}")
    c = report["copies"]
    print(
        f"  copies (three edits) of indexed drawings and emoji: recall@1 {c['recall_at_1']:.3f}, the original badged "
        f"first {c['badged_at_1']:.3f} of {c['queries']}"
    )
    return report


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--drawings", type=int, default=1000, help="drawings indexed (and as many held out as queries)")
    parser.add_argument("--emoji", type=int, default=500, help="emoji indexed (EmojiOne), queried in Noto's artwork")
    parser.add_argument("--copies", type=int, default=300, help="edited copies of indexed images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    return parser


if __name__ == "__main__":
    run_and_save(run, parser)
