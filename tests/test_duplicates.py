"""The duplicate finder: runs through a real worker, the pairs a search would badge "Same picture", the groups they
make, a person's answers (keep one, not the same picture) and the admin page, bad input answered clearly."""

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from search import duplicates
from search.models import Collection, DistinctPair, DuplicatePair, DuplicateRun, Embedding, IndexedImage, LocalFeatures

from .conftest import edited_copy, jpeg_bytes, picture_row

PAGE = "/admin/search/duplicaterun/"
ANSWER = PAGE + "answer/"


def pair(a, b, inliers=40):
    """A verified pair, as a run records it."""
    run = DuplicateRun.objects.create(status="running")
    duplicates.duplicate_run_record(run, last_id=max(a.id, b.id), done=1, failed=0, pairs=[(a.id, b.id, inliers)])


NAMES = itertools.count()


def rows(settings, count, collection=None):
    """Indexed images of 120 x 90 px with real files, without the worker."""
    numbers = [next(NAMES) for _ in range(count)]
    found = [picture_row(settings, f"pic{n}", (40 * n % 255, 90, 160), []) for n in numbers]
    for image in found:
        image.collection, image.width, image.height, image.source_size = collection, 120, 90, 1000 + image.id
    IndexedImage.objects.bulk_update(found, ["collection", "width", "height", "source_size"])
    return found


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("ada", "ada@example.com", "a long enough secret")
    client.force_login(user)
    return client


# --- Through a real worker ---------------------------------------------------------------------------------------


def wait_for_run(run_id, timeout=240):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = DuplicateRun.objects.get(id=run_id)
        if run.status in ("done", "failed"):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run still {run.status} after {timeout}s")


@pytest.fixture
def with_copies(worker, photo_folder):
    """The 12 photo cut-outs and two edited copies (one shrunk and re-encoded, one cropped), indexed by the worker:
    (originals by name, copies by name)."""
    animals = sorted((photo_folder / "animals").glob("*.png"))
    food = sorted((photo_folder / "food").glob("*.png"))
    copies = photo_folder / "copies"
    copies.mkdir()
    with Image.open(animals[0]) as img:
        white = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
        small = white.resize((img.width * 3 // 5, img.height * 3 // 5))
    (copies / "shrunk.jpg").write_bytes(jpeg_bytes(small, quality=75))
    (copies / "cropped.jpg").write_bytes(edited_copy(food[0]))
    call_command("index_images", str(photo_folder))
    by_path = {Path(i.source_path).name: i for i in IndexedImage.objects.all()}
    assert len(by_path) == 14 and all(i.status == "ready" for i in by_path.values())
    return by_path, (animals[0].name, food[0].name)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_through_the_worker_groups_each_picture_with_its_edited_copies(with_copies):
    """A run over the whole index checks every image on the index worker and finds exactly the two copies' groups."""
    images, (animal, food) = with_copies
    run = wait_for_run(duplicates.duplicate_run_start(only_new=False).id)
    assert run.status == "done", run.error
    assert (run.total, run.done, run.failed) == (14, 14, 0)
    expected = [
        sorted([images[animal].id, images["shrunk.jpg"].id]),
        sorted([images[food].id, images["cropped.jpg"].id]),
    ]
    assert sorted(duplicates.duplicate_groups()) == sorted(expected)
    assert run.pairs_found == 2 and all(p.inliers >= 10 for p in DuplicatePair.objects.all())

    # Keep the original: the copy leaves the index, its file, thumbnail, vectors and keypoints too.
    copy = images["shrunk.jpg"]
    files = [Path(copy.file.path), Path(copy.thumbnail.path)]
    assert all(f.exists() for f in files)
    assert duplicates.duplicates_keep(images[animal].id, expected[0]) == 1
    assert not IndexedImage.objects.filter(id=copy.id).exists()
    assert not any(f.exists() for f in files)
    assert not Embedding.objects.filter(image_id=copy.id).exists()
    assert not LocalFeatures.objects.filter(image_id=copy.id).exists()
    assert duplicates.duplicate_groups() == [expected[1]]

    # Not the same picture: remembered; a second full run does not propose the pair again.
    duplicates.duplicates_not_same(images["cropped.jpg"].id, expected[1])
    assert duplicates.duplicate_groups() == []
    again = wait_for_run(duplicates.duplicate_run_start(only_new=False).id)
    assert again.status == "done" and again.done == 13
    assert duplicates.duplicate_groups() == [] and DistinctPair.objects.count() == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_new_run_checks_only_the_images_added_since(with_copies, photo_folder):
    """With "only new", a second run checks just the image indexed after the first, and finds its original; the beat's
    follow starts that run by itself once a whole-index run has finished, and only when there is something new."""
    images, (animal, _food) = with_copies
    assert duplicates.duplicate_run_follow() is None  # never run over the whole index: nothing to keep current
    assert wait_for_run(duplicates.duplicate_run_start(only_new=False).id).status == "done"
    assert duplicates.new_images_count() == 0
    assert duplicates.duplicate_run_follow() is None  # nothing new
    vehicle = sorted((photo_folder / "vehicles").glob("*.png"))[0]
    later = photo_folder / "later"
    later.mkdir()
    (later / "vehicle-copy.jpg").write_bytes(edited_copy(vehicle))
    call_command("index_images", str(photo_folder))
    assert duplicates.new_images_count() == 1
    run = wait_for_run(duplicates.duplicate_run_follow().id)
    assert run.only_new and run.collection_id is None
    assert (run.status, run.total, run.done) == ("done", 1, 1)
    new = IndexedImage.objects.get(source_path__endswith="vehicle-copy.jpg")
    assert sorted([IndexedImage.objects.get(source_path=str(vehicle)).id, new.id]) in duplicates.duplicate_groups()


# --- The service's rows -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_groups_are_the_connected_pairs_and_a_refused_pair_is_never_stored(settings):
    """A-B and B-C make one group, D-E another; "not the same" cuts its pairs and keeps them out of later runs."""
    a, b, c, d, e = rows(settings, 5)
    pair(a, b)
    pair(c, b)
    pair(d, e)
    assert duplicates.duplicate_groups() == [[a.id, b.id, c.id], [d.id, e.id]]
    assert duplicates.duplicates_not_same(e.id, [d.id, e.id]) == 1
    assert duplicates.duplicate_groups() == [[a.id, b.id, c.id]]
    run = DuplicateRun.objects.create(status="running")
    assert duplicates.duplicate_run_record(run, last_id=e.id, done=2, failed=0, pairs=[(e.id, d.id, 99)]) == 0
    assert duplicates.duplicate_groups() == [[a.id, b.id, c.id]]
    assert DuplicateRun.objects.get(id=run.id).done == 2


@pytest.mark.django_db
def test_a_group_within_a_collection_holds_only_its_images(settings):
    """A pair across two collections is in the whole index's groups, not in either collection's."""
    mine, theirs = Collection.objects.create(name="mine"), Collection.objects.create(name="theirs")
    a, b = rows(settings, 2, mine)
    (c,) = rows(settings, 1, theirs)
    pair(a, b)
    pair(b, c)
    assert duplicates.duplicate_groups() == [[a.id, b.id, c.id]]
    assert duplicates.duplicate_groups(mine.id) == [[a.id, b.id]]
    assert duplicates.duplicate_groups(theirs.id) == []


@pytest.mark.django_db
def test_a_run_claims_only_new_images_and_a_stalled_one_is_taken_over(settings):
    """only_new starts after the last finished run's newest image; a running run is claimed again, or replaced by a
    new one, only when stale."""
    images = rows(settings, 4)
    DuplicateRun.objects.create(status="done", up_to_id=images[1].id)
    run = DuplicateRun.objects.create(only_new=True)
    claimed = duplicates.duplicate_run_claim(run.id, model_key="m")
    assert (claimed.status, claimed.total, claimed.after_id) == ("running", 2, images[1].id)
    assert duplicates.duplicate_run_next_ids(claimed, 10) == [images[2].id, images[3].id]
    assert duplicates.duplicate_run_claim(run.id, model_key="m") is None  # its worker is alive
    DuplicateRun.objects.filter(id=run.id).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert duplicates.duplicate_run_claim(run.id, model_key="m").id == run.id
    with pytest.raises(duplicates.DuplicateError, match="still running"):
        duplicates.duplicate_run_start()
    DuplicateRun.objects.filter(id=run.id).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    new = duplicates.duplicate_run_start()  # a run whose worker is gone does not block the next one for ever
    assert new.status == "queued" and DuplicateRun.objects.get(id=run.id).status == "failed"


# --- The admin page -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_shows_each_group_side_by_side_with_sizes_and_the_largest(staff, settings):
    """Thumbnails, pixels and bytes, format, the largest first and marked, both answers; and the run's progress."""
    a, b, c = rows(settings, 3)
    IndexedImage.objects.filter(id=b.id).update(width=640, height=480, source_size=123_456)
    pair(a, b)
    DuplicateRun.objects.create(status="running", total=10, done=4, pairs_found=1)
    page = staff.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "1 group of the same picture" in html
    assert "640 × 480 px" in html and "120 × 90 px" in html and "120.6\xa0KB" in html and "PNG" in html
    group = html[html.index('class="dup-group"') :]
    assert group.index(f'data-image="{b.id}"') < group.index(f'data-image="{a.id}"')  # the largest first
    assert group.count("Largest") == 1 and f'data-image="{c.id}"' not in html
    assert html.count('value="keep"') == 2 and html.count('value="not_same"') == 2
    assert 'class="reindex-bar" max="10" value="4"' in html
    run = DuplicateRun.objects.first()
    progress = staff.get(f"{PAGE}{run.id}/progress/").json()
    assert (progress["status"], progress["processed"], progress["pairs"], progress["active"]) == ("running", 4, 1, True)
    assert staff.get(f"{PAGE}999999/progress/").status_code == 404


@pytest.mark.django_db
def test_starting_a_run_from_the_page_queues_it_and_a_second_is_refused(staff, settings):
    """The form starts a run for the chosen collection; while it is under way another is refused with a message."""
    photos = Collection.objects.create(name="photos")
    response = staff.post(f"{PAGE}start/", {"collection": photos.id, "only_new": "1"})
    assert response.status_code == 302 and response["Location"].endswith(f"?collection={photos.id}")
    run = DuplicateRun.objects.get()
    assert (run.collection_id, run.only_new, run.status) == (photos.id, True, "queued")
    response = staff.post(f"{PAGE}start/", {}, follow=True)
    assert "is still queued" in response.content.decode() and DuplicateRun.objects.count() == 1
    assert staff.post(f"{PAGE}start/", {"collection": "999999"}).status_code == 302
    assert DuplicateRun.objects.count() == 1


@pytest.mark.django_db
def test_the_answers_from_the_page(staff, settings):
    """ "Not the same picture" remembers the pairs; "keep this one" removes the others with their files."""
    a, b, c = rows(settings, 3)
    pair(a, b)
    pair(b, c)
    group = f"{a.id},{b.id},{c.id}"
    response = staff.post(ANSWER, {"answer": "not_same", "image": c.id, "group": group})
    assert response.status_code == 302
    assert DistinctPair.objects.filter(image_a=b.id, image_b=c.id).exists()
    assert duplicates.duplicate_groups() == [[a.id, b.id]]
    removed = Path(settings.MEDIA_ROOT) / b.file.name
    assert removed.exists()
    response = staff.post(ANSWER, {"answer": "keep", "image": a.id, "group": f"{a.id},{b.id}"}, follow=True)
    assert f"Image {a.id} kept; 1 other image left the index." in response.content.decode()
    assert list(IndexedImage.objects.values_list("id", flat=True).order_by("id")) == [a.id, c.id]
    assert not removed.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown", "is not in the index (unknown, or removed already)"),
        ("removed", "is not in the index (unknown, or removed already)"),
        ("not a number", "is not an image id"),
        ("other collection", "is in another collection (theirs) than this group"),
        ("not in the group", "is in no group of duplicates any more"),
        ("unknown collection", "does not exist"),
        ("unknown answer", "Unknown answer"),
    ],
)
def test_bad_answers_are_refused_with_a_clear_message(staff, settings, case, message):
    """Unknown ids, a removed image, an image of another collection than the group's: 400 and the reason, no change."""
    mine, theirs = Collection.objects.create(name="mine"), Collection.objects.create(name="theirs")
    a, b = rows(settings, 2, mine)
    (c,) = rows(settings, 1, theirs)
    (d,) = rows(settings, 1, mine)
    pair(a, b)
    data = {"answer": "keep", "image": a.id, "group": f"{a.id},{b.id}", "collection": mine.id}
    if case == "unknown":
        data["image"] = 999999
    elif case == "removed":
        IndexedImage.objects.filter(id=a.id).delete()
    elif case == "not a number":
        data["image"] = "abc"
    elif case == "other collection":
        data["image"] = c.id
    elif case == "not in the group":
        data["image"] = d.id
    elif case == "unknown collection":
        data["collection"] = 999999
    elif case == "unknown answer":
        data["answer"] = "merge"
    before = IndexedImage.objects.count()
    response = staff.post(ANSWER + f"?collection={mine.id}", data)
    assert response.status_code in (302, 400)
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    if response.status_code == 400:
        shown = [response.content.decode()]
    assert any(message in text for text in shown), shown
    assert IndexedImage.objects.count() == before and not DistinctPair.objects.exists()


@pytest.mark.django_db
def test_only_staff_reach_the_page_and_answers_must_be_posted(client, staff, settings):
    """GET on an action is 405; a visitor is sent to the sign-in page; progress answers non-staff in JSON."""
    assert staff.get(ANSWER).status_code == 405 and staff.get(f"{PAGE}start/").status_code == 405
    staff.logout()
    assert client.get(PAGE).status_code == 302 and "/admin/login/" in client.get(PAGE)["Location"]
    assert client.post(ANSWER, {"answer": "keep"}).status_code == 302
    run = DuplicateRun.objects.create()
    response = client.get(f"{PAGE}{run.id}/progress/")
    assert response.status_code == 403 and json.loads(response.content)["detail"] == "Staff only."


@pytest.mark.django_db
def test_the_page_in_chinese(staff, settings):
    """The page's own words are translated."""
    a, b = rows(settings, 2)
    pair(a, b)
    html = staff.get(PAGE, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "查重" in html or "重复" in html
    assert "Keep this one" not in html and "groups of the same picture" not in html
