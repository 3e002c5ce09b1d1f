"""Finding the source of a picture: local features stored at index time, copies verified and put first."""

import hashlib
import io

import pytest
from django.core.management import call_command
from PIL import Image, ImageDraw, ImageFilter

from search.models import IndexedImage, LocalFeatures
from workers.imageio import load_rgb
from workers.ranking import signature, tunables, verification

from .conftest import jpeg_bytes, search_upload, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def mirrored_turned_copy(path):
    """Mirrored, turned a quarter and cropped: a copy the global vector alone ranks poorly."""
    with Image.open(path) as img:
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA")).convert("RGB")
    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).transpose(Image.Transpose.ROTATE_90)
    w, h = img.size
    return jpeg_bytes(img.crop((w // 10, h // 10, w - w // 10, h - h // 10)), quality=60)


def test_indexing_stores_local_features_of_every_image(worker, photo_folder):
    """Each indexed image gets its packed keypoints beside its vector, in the current format."""
    call_command("index_images", str(photo_folder))
    rows = LocalFeatures.objects.all()
    assert rows.count() == IndexedImage.objects.count() == 12
    for row in rows:
        features = verification.unpack(bytes(row.data))
        assert 0 < len(features) <= verification.max_keypoints()


def test_a_copy_is_marked_and_comes_first_even_where_its_global_score_is_lower(worker, client, photo_folder):
    """Mirrored + turned copies: the original is the verified "copy" first, with re-ranking timed; off, it is not marked."""
    call_command("index_images", str(photo_folder))
    for original in IndexedImage.objects.order_by("id")[:6]:
        job = search_upload(client, mirrored_turned_copy(original.source_path), k=5)
        assert job["status"] == "done", job["error"]
        assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (original.id, "copy")
        assert [r["match"] for r in job["results"][1:]] == ["similar"] * (job["count"] - 1)
        assert job["timings"]["rerank_ms"] > 0
    plain = search_upload(client, mirrored_turned_copy(original.source_path), k=5, rerank="false")
    assert {r["match"] for r in plain["results"]} == {"similar"} and plain["timings"]["rerank_ms"] is None
    scores = [r["score"] for r in plain["results"]]
    assert scores == sorted(scores, reverse=True)


def test_an_unrelated_picture_is_never_called_a_copy(worker, client, photo_folder):
    """A generated picture that is in no way in the index: every result is only "similar"."""
    call_command("index_images", str(photo_folder))
    img = Image.effect_mandelbrot((320, 240), (-2, -1.2, 1, 1.2), 100).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG")
    job = search_upload(client, out.getvalue(), k=12)
    assert job["count"] == 12 and {r["match"] for r in job["results"]} == {"similar"}


def test_searching_with_an_indexed_image_finds_itself_as_a_copy(worker, client, photo_folder):
    """ "Find similar" on a result: the image itself comes back first, verified with its stored features."""
    call_command("index_images", str(photo_folder))
    image = IndexedImage.objects.order_by("id")[3]
    job = wait_for_job(client, client.post("/api/v1/searches/", {"image_id": image.id, "k": 4}).json()["url"])
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (image.id, "copy")


def test_the_very_file_uploaded_is_a_copy_even_with_too_few_keypoints_to_verify(worker, client, photo_folder):
    """A soft disc has no keypoints to match; uploading the indexed file itself still says "same picture"."""
    disc = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(disc).ellipse((8, 8, 88, 88), fill="black")
    disc = disc.filter(ImageFilter.GaussianBlur(2))
    assert verification.verify(verification.extract(disc), verification.extract(disc)) < tunables.MIN_INLIERS
    disc.save(photo_folder / "disc.png")
    call_command("index_images", str(photo_folder))
    data = (photo_folder / "disc.png").read_bytes()
    image = IndexedImage.objects.get(content_hash=hashlib.sha256(data).hexdigest())
    job = search_upload(client, data, k=4)
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (image.id, "copy")
    assert [r["match"] for r in job["results"][1:]] == ["similar"] * 3


def blurred_thumbnail(path):
    """Shrunk to 48 pixels, blurred, turned a quarter: most such copies keep too few keypoints to verify."""
    img = load_rgb(path)
    img.thumbnail((48, 48), Image.Resampling.BILINEAR)
    return img.filter(ImageFilter.GaussianBlur(1.0)).transpose(Image.Transpose.ROTATE_90)


def test_a_copy_too_small_to_verify_leads_by_its_signature_without_the_badge(worker, client, photo_folder):
    """Copies that local features cannot verify but whose signature matches (most of them, bench/copy_detection.py
    measures how many): the original comes first, though it was not first globally for all of them; a 16x16 likeness
    alone is no proof of the same picture, so it is "similar", its evidence saying it looks alike by its signature."""
    call_command("index_images", str(photo_folder))
    tried = 0
    for original in IndexedImage.objects.order_by("id"):
        copy = load_rgb(io.BytesIO(jpeg_bytes(blurred_thumbnail(original.source_path), quality=70)))
        full = load_rgb(original.source_path)
        if verification.verify(verification.extract(copy), verification.extract(full)) >= tunables.MIN_INLIERS:
            continue  # local features alone find this one
        if signature.similarities(signature.compute(copy), signature.compute(full)[None])[0] < tunables.SIGNATURE_COPY:
            continue  # too far gone for its signature too
        tried += 1
        job = search_upload(client, jpeg_bytes(copy), k=5)
        assert job["status"] == "done", job["error"]
        first = job["results"][0]
        assert (first["image_id"], first["match"]) == (original.id, "similar"), original.source_path
        assert first["evidence"]["by"] == "signature" and first["evidence"]["verdict"] == "looks alike"
        assert first["evidence"]["likeness"] >= tunables.SIGNATURE_COPY
        assert [r["match"] for r in job["results"][1:]] == ["similar"] * 4
    assert tried >= 6
    # Without re-ranking the same copies are only "similar".
    plain = search_upload(client, jpeg_bytes(copy), k=5, rerank="false")
    assert {r["match"] for r in plain["results"]} == {"similar"}


def test_the_signature_brings_in_an_original_the_k_nn_did_not_return(photo_folder):
    """A near duplicate that is not among the k-NN candidates joins them with its own cosine score, after them;
    the search's categories and min_score still hold for it. (In-process: the session's worker would answer a
    search as well as any worker started with fewer candidates.)"""
    from types import SimpleNamespace

    from search.models import Embedding
    from workers.ranking.candidates import GLOBAL, NEAR, Candidates

    crow_path = next(photo_folder.glob("animals/*.png"))
    crow = load_rgb(crow_path)
    rows = {}
    for name, tag, vector, img in (
        ("crow", "animals", [1.0, 0.0, 0.0], crow),
        ("other", "food", [0.0, 1.0, 0.0], Image.new("RGB", (90, 60), "orange")),
    ):
        image = IndexedImage.objects.create(
            content_hash=name, file=f"{name}.png", title=name, user_tags=[tag], status=IndexedImage.Status.READY
        )
        Embedding.objects.create(image=image, model_key="test-space", vector=vector)
        LocalFeatures.objects.create(
            image=image, data=verification.pack(verification.extract(img)), signature=signature.compute(img)
        )
        rows[name] = image.id
    query_signature = signature.compute(blurred_thumbnail(crow_path))

    def near(candidates=((rows["other"], 0.8),), query_signature=query_signature, categories=(), min_score=0.0):
        """[(image_id, score, is the near duplicate)] after the signature's stage, the global k-NN having returned
        `candidates`; the query's cosine is 0.6 to the crow, 0.8 to the other."""
        query = SimpleNamespace(
            vector=[0.6, 0.8, 0.0],
            space=SimpleNamespace(key="test-space"),
            categories=categories,
            min_score=min_score,
            signature_match=signature.best_in_index(query_signature),
        )
        table = Candidates(query)
        for image_id, score in candidates:
            table.add(image_id, score, GLOBAL)
        signature.near_duplicate(query, table)
        return [(row.image_id, row.score, NEAR in row.sources) for row in table]

    joined = near()
    assert joined[0] == (rows["other"], 0.8, False)
    assert joined[1] == (rows["crow"], pytest.approx(0.6, abs=1e-3), True) and len(joined) == 2  # halfvec
    assert near(categories=["food"]) == [(rows["other"], 0.8, False)]
    assert near(min_score=0.7) == [(rows["other"], 0.8, False)]
    among = [(rows["crow"], 0.6), (rows["other"], 0.8)]
    assert near(among) == [(rows["crow"], 0.6, True), (rows["other"], 0.8, False)]
    flat = signature.compute(Image.new("RGB", (40, 40), "grey"))
    assert near(query_signature=flat) == [(rows["other"], 0.8, False)]


def test_a_candidate_whose_signature_looks_like_the_query_leads_the_similar_results(photo_folder):
    """Ranked as searches are, every stage, the candidates' signatures read beside their keypoints: without inliers
    and below the near-duplicate threshold, the candidate most like the query at 16x16 leads the "similar" results
    ahead of a slightly closer one; an image without a signature gets no credit; without re-ranking (the global k-NN
    alone) the order is the cosine's. (In-process, as above.)"""
    from types import SimpleNamespace

    import numpy as np

    from search.models import Embedding
    from workers.ranking.query import Query
    from workers.ranking.stages import PLAIN, STAGES, rank

    crow = load_rgb(next(photo_folder.glob("animals/*.png")))
    query_signature = signature.compute(crow)
    noise = np.random.default_rng(0).normal(size=(2, signature.DIM)).astype(np.float32)
    looks_alike = signature._unit(query_signature + 0.5 * signature._unit(noise[0]))  # about 0.9: no near duplicate
    no_keypoints = verification.pack(verification.Features((verification.EMPTY, verification.EMPTY)))
    ids = {}
    for name, sig, vector in (
        ("closer", signature._unit(noise[1]), [0.8, 0.6, 0.0]),
        ("unsigned", None, [0.79, 0.0, (1 - 0.79**2) ** 0.5]),
        ("alike", looks_alike, [0.7, -((1 - 0.7**2) ** 0.5), 0.0]),
    ):
        image = IndexedImage.objects.create(
            content_hash=name, file=f"{name}.png", title=name, status=IndexedImage.Status.READY
        )
        LocalFeatures.objects.create(image=image, data=no_keypoints, signature=sig)
        Embedding.objects.create(image=image, model_key="test-space", vector=vector)
        ids[name] = image.id
    assert signature.similarities(query_signature, looks_alike[None])[0] < tunables.SIGNATURE_COPY
    space = SimpleNamespace(key="test-space", projection=None, copy_key=None, vectors=lambda raw: raw)
    query = Query.of_image(crow, [[1.0, 0.0, 0.0]], space, k=3)
    ranked = [(i, round(score, 3), match) for i, score, match in rank(query).results]  # vectors stored as halfvec
    assert ranked == [
        (ids["alike"], 0.7, "similar"),
        (ids["closer"], 0.8, "similar"),
        (ids["unsigned"], 0.79, "similar"),
    ]
    assert [i for i, _, _ in rank(query, PLAIN).results] == [ids["closer"], ids["unsigned"], ids["alike"]]
    assert len(STAGES) > len(PLAIN)


def test_images_indexed_without_features_get_them_from_the_command(worker, client, photo_folder, capsys):
    """Before extraction a copy is only "similar"; extract_local_features fills the gap and it is a copy again."""
    call_command("index_images", str(photo_folder))
    original = IndexedImage.objects.order_by("id")[2]
    LocalFeatures.objects.all().delete()  # as for an index built before local features existed
    job = search_upload(client, mirrored_turned_copy(original.source_path), k=12)
    assert {r["match"] for r in job["results"]} == {"similar"}
    capsys.readouterr()
    call_command("extract_local_features")
    assert "12 images have no local features or signature; 1 tasks queued" in capsys.readouterr().out
    import time

    deadline = time.monotonic() + 60
    while LocalFeatures.objects.count() < 12 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert LocalFeatures.objects.count() == 12
    job = search_upload(client, mirrored_turned_copy(original.source_path), k=12)
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (original.id, "copy")
    # Rows extracted before signatures existed: the command re-extracts them, keypoints and signature.
    LocalFeatures.objects.update(signature=None)
    call_command("extract_local_features")
    assert "12 images have no local features or signature; 1 tasks queued" in capsys.readouterr().out
    deadline = time.monotonic() + 60
    while LocalFeatures.objects.filter(signature__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {len(s) for s in LocalFeatures.objects.values_list("signature", flat=True)} == {signature.DIM}


def test_with_local_features_off_indexing_extracts_none(settings):
    """IMGSEARCH_LOCAL_FEATURES=0: the pipeline asks for no image's features (and searches do not re-rank)."""
    from workers.indexing.features import feature_ids

    images = [IndexedImage(id=1), IndexedImage(id=2)]
    assert feature_ids(images) == {1, 2}
    settings.IMGSEARCH_LOCAL_FEATURES = False
    assert feature_ids(images) == frozenset()


def test_missing_copy_evidence_is_extracted_for_ready_images_only(photo_folder):
    """`extract_local_features`' task: ready images without a record (or its signature) get one, as indexing
    stores it; pending images and complete records are left alone, and an unreadable file is counted, not raised."""
    from search.indexing import ScanReport, image_add
    from workers.indexing.jobs import images_extract_features

    report = ScanReport()
    images = [image_add(path, report=report) for path in sorted(photo_folder.rglob("*.png"))[:5]]
    ready, no_signature, complete, pending, unreadable = images
    IndexedImage.objects.filter(id__in=[ready.id, no_signature.id, complete.id, unreadable.id]).update(status="ready")
    LocalFeatures.objects.create(image=no_signature, data=b"old", signature=None)
    LocalFeatures.objects.create(image=complete, data=b"kept", signature=[0.0] * signature.DIM)
    unreadable.file.storage.delete(unreadable.file.name)

    assert images_extract_features([image.id for image in images]) == (2, 1)
    for image in (ready, no_signature):
        row = LocalFeatures.objects.get(image=image)
        decoded = load_rgb(image.file.path, target_size=tunables.WORK_SIDE)
        assert bytes(row.data) == verification.pack(verification.extract(decoded))
        assert row.signature is not None and len(row.signature) == signature.DIM
    assert bytes(LocalFeatures.objects.get(image=complete).data) == b"kept"
    assert not LocalFeatures.objects.filter(image__in=[pending, unreadable]).exists()


def test_pictures_of_one_kind_get_no_badge_and_a_copy_says_why_it_has_one(worker, client, photo_folder):
    """Through the real worker, an index of plain pictures built here (a grey disc, a red diamond, a flag, a warning
    sign) beside real photos: another picture of the same kind (a brown disc, a blue diamond, another flag of that
    layout, the sign of that family with another pictogram) may lead the results but never wears the "Same picture"
    badge; the very file does (identical file), and so does an edited copy of a photo (keypoints, with its inliers)."""
    from .test_appearance import diamond, disc, tricolour, warning

    plain = photo_folder / "plain"
    plain.mkdir()
    indexed = {
        "disc": disc((45, 45, 50)),
        "diamond": diamond((220, 20, 30)),
        "flag": tricolour([(0, 146, 70), "white", (206, 43, 55)]),
        "sign": warning("flame"),
    }
    for name, img in indexed.items():
        img.save(plain / f"{name}.png")
    call_command("index_images", str(photo_folder))
    others = [
        disc((140, 90, 40)),
        diamond((30, 90, 220)),
        tricolour([(0, 85, 164), "white", (239, 65, 53)]),
        warning("!"),
    ]
    for img in others:
        job = search_upload(client, jpeg_bytes(img, quality=95), k=5)
        assert job["status"] == "done", job["error"]
        assert {r["match"] for r in job["results"]} == {"similar"}
    own = search_upload(client, (plain / "sign.png").read_bytes(), k=3)
    assert own["results"][0]["match"] == "copy" and own["results"][0]["evidence"]["by"] == "identical file"
    original = IndexedImage.objects.get(source_path=str(next(photo_folder.glob("animals/*.png"))))
    job = search_upload(client, mirrored_turned_copy(original.source_path), k=3)
    first = job["results"][0]
    assert (first["image_id"], first["match"]) == (original.id, "copy")
    assert first["evidence"]["by"] == "keypoints" and first["evidence"]["inliers"] >= tunables.MIN_INLIERS
    assert [r["evidence"] for r in job["results"][1:]] == [None, None]
