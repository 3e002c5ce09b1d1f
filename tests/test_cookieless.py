"""API clients without cookies: an anonymous search's Location opens it to whoever holds it, POST ?wait=N answers with
the finished search, the documented curl and Python examples work, and an over-size upload's 413 reaches a client
that sends its whole body before reading."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client
from PIL import Image

from search import jobs, waiting
from search.models import SearchJob

from .conftest import ROOT, jpeg_bytes
from .test_privacy import SEARCHES, signed_in, start_search
from .test_waiting import finish_later


def post_search(client, url=SEARCHES):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = jpeg_bytes(Image.new("RGB", (48, 48), "red"))
    return client.post(url, {"image": SimpleUploadedFile("q.jpg", data, content_type="image/jpeg")})


# --- The key in the Location ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_location_of_an_anonymous_search_opens_it_to_a_client_without_cookies():
    """The Location carries the key: a client with no session reads the job and its query image by it alone."""
    response = post_search(Client())
    location = response["Location"]
    job_id = response.json()["id"]
    assert response.status_code == 202 and re.search(r"\?key=[0-9a-f]{32}$", location)
    assert response.json()["url"] == location.split("?")[0]  # the page's script adds ?wait= to the plain url
    body = Client().get(location).json()
    assert body["id"] == job_id and body["query_image_url"].endswith(location[location.index("?") :])
    image = Client().get(body["query_image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"


@pytest.mark.django_db
def test_without_the_right_key_an_anonymous_search_stays_hidden(django_user_model):
    """No key, a wrong key, or another search's key: 404 for the job and for its image, as for a missing job."""
    job_id = start_search(Client())
    other_key = jobs.job_key(start_search(Client()))
    for query in ("", "?key=", f"?key={other_key}", "?key=" + "0" * 32, "?key=" + "x" * 5000):
        assert Client().get(f"{SEARCHES}{job_id}/{query}").status_code == 404, query
        assert Client().get(f"{SEARCHES}{job_id}/image/{query}").status_code == 404, query
    stranger = signed_in(django_user_model.objects.create_user("eve", password="x" * 12))
    assert stranger.get(f"{SEARCHES}{job_id}/").status_code == 404


@pytest.mark.django_db
def test_a_signed_in_users_search_has_no_key_and_no_key_opens_it(django_user_model):
    """A user's search is read with their credentials; its would-be key opens nothing."""
    owner = signed_in(django_user_model.objects.create_user("alice", password="x" * 12))
    response = post_search(owner)
    job_id = response.json()["id"]
    assert "key=" not in response["Location"]
    assert Client().get(f"{SEARCHES}{job_id}/?key={jobs.job_key(job_id)}").status_code == 404


# --- POST ?wait=N ----------------------------------------------------------------------------------------


@pytest.fixture
def _listener_closed():
    """The listening connection a wait keeps must not outlive the test database."""
    yield
    waiting.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_listener_closed")
@pytest.mark.parametrize("fail", [False, True])
def test_post_with_wait_answers_the_finished_search_in_the_same_request(monkeypatch, fail):
    """The search ends 0.3 s in (done or failed): the POST answers 200 with the job, and the Location still opens it."""
    monkeypatch.setattr(jobs, "search_job_enqueue", lambda job_id: finish_later(job_id, 0.3, fail=fail))
    started = time.monotonic()
    response = post_search(Client(), f"{SEARCHES}?wait=5")
    assert response.status_code == 200 and time.monotonic() - started < 3
    body = response.json()
    assert body["status"] == ("failed" if fail else "done") and "results" in body and "timings" in body
    assert Client().get(response["Location"]).json()["status"] == body["status"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_listener_closed")
def test_post_with_wait_answers_202_when_the_search_has_not_ended(monkeypatch):
    """Nothing runs it: after the 1 s asked for, the usual 202 with a Location to follow."""
    monkeypatch.setattr(jobs, "search_job_enqueue", lambda job_id: None)
    started = time.monotonic()
    response = post_search(Client(), f"{SEARCHES}?wait=1")
    assert response.status_code == 202 and 0.9 < time.monotonic() - started < 3
    assert response.json()["status"] == "pending" and "key=" in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("wait", ["-1", "11", "soon"])
def test_post_with_a_bad_wait_is_a_400_and_starts_nothing(wait):
    """wait is 0..10 seconds, as for GET; a bad one is refused before any job is made."""
    response = post_search(Client(), f"{SEARCHES}?wait={wait}")
    assert response.status_code == 400 and "wait" in response.json()["detail"]
    assert not SearchJob.objects.exists()


# --- The documented examples, against the live server and a real worker ---------------------------------


def documented_block(language, marker):
    """The code block of docs/operations.md in `language` that holds `marker`, unindented."""
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", text, flags=re.S | re.M)
    (code,) = [body for indent, body in blocks if marker in body]
    indent = re.match(r" *", code).group()
    return "\n".join(line.removeprefix(indent) for line in code.splitlines()) + "\n"


def json_values(text):
    """Every JSON value printed one after the other."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


@pytest.fixture
def photo(indexed, tmp_path):
    """A folder holding photo.jpg: one of the indexed photos, shrunk and saved as a JPEG."""
    with Image.open(next(indexed.glob("animals/*.png"))) as source:
        image = source.convert("RGB")
    image.thumbnail((200, 200))
    (tmp_path / "photo.jpg").write_bytes(jpeg_bytes(image))
    return tmp_path


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_listener_closed")
def test_the_documented_curl_example_reads_its_search_without_cookies(live_server, photo):
    """The docs' curl lines, as written (but for the host): both searches come back done, with no cookie jar."""
    script = documented_block("sh", "%header{location}").replace("http://127.0.0.1:8000", live_server.url)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=photo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    answers = json_values(proc.stdout)
    assert [a["status"] for a in answers] == ["done", "done"], answers
    assert all(a["count"] > 0 for a in answers)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_listener_closed")
def test_the_documented_python_example_reads_its_search(live_server, photo):
    """The docs' Python lines, as written (but for the host), print the finished search."""
    script = documented_block("python", "requests.post").replace("http://127.0.0.1:8000", live_server.url)
    proc = subprocess.run([sys.executable, "-c", script], cwd=photo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("done [(") and proc.stdout.count("(") >= 2, proc.stdout


# --- 413 to a client still sending -----------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn():
    """The web server as deployed (gunicorn with threads) on a free port, with a 1 MB upload limit."""
    port = free_port()
    env = {**os.environ, "IMGSEARCH_MAX_UPLOAD_MB": "1"}
    command = [sys.executable, "-m", "gunicorn", "imgsearch.wsgi", "--bind", f"127.0.0.1:{port}", "--threads", "4"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


@pytest.mark.parametrize("megabytes", [30, 200])
def test_an_over_size_upload_gets_its_413_even_from_a_client_that_sends_it_all_first(gunicorn, megabytes):
    """urllib sends the whole body, then reads, and asks the server to close the connection: it reads the 413
    (without the server reading the rest of the body, it got a broken pipe)."""
    boundary = "imgsearch-test"
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'.encode(),
            b"\xff" * (megabytes << 20),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        f"{gunicorn}/api/v1/searches/", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=120)
    assert answer.value.code == 413 and "1 MB" in json.loads(answer.value.read())["detail"]
