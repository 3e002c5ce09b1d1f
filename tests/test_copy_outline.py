"""Why a result is a copy: the transform between the query and a verified copy, in the images' own pixels, and the
query's outline in the result (cropped, turned, mirrored, rescaled), as the API gives it."""

import math

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from search.models import IndexedImage
from workers.ranking import tunables, verification

from .conftest import jpeg_bytes, search_upload

SCALE = 0.8  # the copy is shrunk to this much of the crop


def edited(path, crop):
    """The image cropped to `crop` (fractions: left, top, right, bottom), mirrored, turned a quarter anticlockwise
    and shrunk to SCALE: JPEG bytes, and where each corner of the copy (top left, top right, bottom right, bottom
    left) lies in the original, in fractions of it."""
    with Image.open(path) as img:
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA")).convert("RGB")
    w, h = img.size
    left, top, right, bottom = round(crop[0] * w), round(crop[1] * h), round(crop[2] * w), round(crop[3] * h)
    cw, ch = right - left, bottom - top
    copy = img.crop((left, top, right, bottom)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    copy = copy.transpose(Image.Transpose.ROTATE_90)  # (u, v) of the mirrored crop -> (v, cw - u)
    copy = copy.resize((round(copy.width * SCALE), round(copy.height * SCALE)), Image.Resampling.LANCZOS)

    def back(a, b):  # a point of the copy -> the original, in fractions
        a, b = a / SCALE, b / SCALE  # unshrunk
        u, v = cw - b, a  # unturned
        u = cw - u  # unmirrored
        return ((u + left) / w, (v + top) / h)

    qw, qh = ch * SCALE, cw * SCALE
    return jpeg_bytes(copy, quality=85), [back(0, 0), back(qw, 0), back(qw, qh), back(0, qh)]


def test_the_transform_maps_the_query_frame_onto_the_result_in_pixels():
    """A fitted transform in the working frames (longer side WORK_SIDE): half size, mirrored, turned a quarter
    clockwise, shifted; in the images' own pixels the outline lands where the geometry says."""
    side = tunables.WORK_SIDE
    turn = np.array([[0.0, -0.5, 200.0], [0.5, 0.0, 20.0]])  # (x, y) -> (200 - y/2, 20 + x/2): a quarter clockwise
    match = verification.Match(40, 0, True, turn, np.zeros((0, 2)), np.zeros((0, 2)))
    found = verification.transform(match, (1000, 500), (2000, 1000))  # working: 1000 -> 256, 2000 -> 256
    # a query pixel (x, y): working (x * s, y * s), s = 256/1000, mirrored (-x s, y s), fitted, then / (256/2000)
    s, r = side / 1000, 2000 / side
    for (fx, fy), (x, y) in zip(found["outline"], [(0, 0), (1000, 0), (1000, 500), (0, 500)]):
        mx, my = -x * s, y * s
        assert fx == pytest.approx((200 - my / 2) * r / 2000, abs=1e-3)
        assert fy == pytest.approx((20 + mx / 2) * r / 1000, abs=1e-3)
    assert found["scale"] == pytest.approx(0.5 * s * r, rel=1e-3)
    assert found["rotation"] == pytest.approx(90.0)
    assert found["mirrored"] is True and found["query_size"] == [1000, 500] and found["result_size"] == [2000, 1000]
    point = np.array(found["matrix"]) @ np.array([1000, 500, 1.0])
    assert point / [2000, 1000] == pytest.approx(found["outline"][2], abs=1e-3)
    assert verification.transform(verification.NO_MATCH, (10, 10), (10, 10)) is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cropped_turned_mirrored_copy_shows_where_it_lies_in_its_original(worker, client, photo_folder):
    """Copies of indexed photos, cropped off centre, mirrored, turned and shrunk: each one verified as the same
    picture gives the transform, whose outline falls on the crop's corners within 4% of the original's sides, with
    the mirroring, the quarter turn and the scale said."""
    call_command("index_images", str(photo_folder))
    crop = (0.05, 0.12, 0.85, 0.97)
    checked = 0
    for original in IndexedImage.objects.order_by("id"):
        data, expected = edited(original.source_path, crop)
        job = search_upload(client, data, k=5)
        assert job["status"] == "done", job["error"]
        first = job["results"][0]
        if first["match"] != "copy" or first["image_id"] != original.id:
            continue  # a stamp with too few keypoints left to verify: test_copies.py measures those
        evidence = first["evidence"]
        assert evidence["by"] == "keypoints" and evidence["inliers"] >= tunables.MIN_INLIERS
        found = evidence["transform"]
        assert found["mirrored"] is True, (original.source_path, found)
        # Mirrored first, the query's top edge runs right to left; in the original it runs down the crop's left side:
        # a quarter turn anticlockwise, as seen.
        assert abs(found["rotation"] + 90) < 5, (original.source_path, found)
        assert found["scale"] == pytest.approx(1 / SCALE, rel=0.08), (original.source_path, found)
        for (x, y), (ex, ey) in zip(found["outline"], expected):
            assert math.hypot(x - ex, y - ey) < 0.04, (original.source_path, found["outline"], expected)
        assert found["result_size"] == [original.width, original.height]
        checked += 1
        for other in job["results"][1:]:
            assert "transform" not in (other["evidence"] or {}), other
    print(f"{checked} of 12 copies verified, their outlines checked")
    assert checked >= 6, f"only {checked} of 12 copies verified"
