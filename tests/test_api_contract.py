"""The public API as a contract: a clean OpenAPI schema, a local docs page, and a fuzzer against the live server."""

import os
import subprocess
import sys

import pytest
import yaml
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from .conftest import ROOT

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))  # `make fuzz` raises it
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]


def generate_schema():
    proc = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--format", "openapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc


def test_the_schema_generates_without_warnings_and_validates():
    """drf-spectacular builds the schema with no warning, and it validates as OpenAPI 3."""
    proc = generate_schema()
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr


def test_every_endpoint_and_error_answer_is_documented():
    """Each API route is in the schema, with the error answers a client must handle."""
    schema = yaml.safe_load(generate_schema().stdout)
    paths = schema["paths"]
    assert set(paths) == {
        "/api/v1/searches/",
        "/api/v1/searches/{job_id}/",
        "/api/v1/searches/{job_id}/image/",
        "/api/v1/tags/",
        "/api/v1/favorites/",
        "/api/v1/favorites/{favorite_id}/",
    }
    start = paths["/api/v1/searches/"]["post"]["responses"]
    assert {"202", "400", "401", "403", "413", "429", "503"} <= set(start)
    assert "404" in paths["/api/v1/searches/{job_id}/"]["get"]["responses"]
    assert "multipart/form-data" in paths["/api/v1/searches/"]["post"]["requestBody"]["content"]
    for path in paths.values():
        for operation in path.values():
            assert operation.get("summary") and operation.get("operationId")


@pytest.mark.django_db
def test_the_docs_page_loads_only_local_files(client):
    """The interactive docs work on a network with no internet: no CDN, scripts from our static files."""
    response = client.get("/api/v1/docs/")
    html = response.content.decode()
    assert response.status_code == 200 and "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html


@pytest.fixture
def token(django_user_model):
    user = django_user_model.objects.create_user("fuzzer", "fuzzer@example.org", "a-long-fuzzing-password")
    return Token.objects.create(user=user).key


def fuzz(url, *extra):
    """Run the Schemathesis CLI (a tool nobody here wrote) against the live server; (exit code, output)."""
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "st"),
            "run",
            f"{url}/api/v1/schema/",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--mode",
            "all",
            "--seed",
            os.environ.get("FUZZ_SEED", "1"),
            "--request-timeout",
            "30",
            "--no-color",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fuzzed_requests_with_a_token_get_documented_answers_and_never_a_5xx(
    live_server, worker, token, settings, photo_folder
):
    """Generated valid and invalid requests, signed in with a token: no 5xx, every answer as documented."""
    call_command("index_images", str(photo_folder))  # real images, so favourites and image searches can succeed
    settings.IMGSEARCH_SEARCH_RATE_ANON = settings.IMGSEARCH_SEARCH_RATE_USER = "100000/min"
    code, output = fuzz(live_server.url, "--header", f"Authorization: Token {token}")
    print(output)
    assert code == 0, output[-6000:]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_fuzzed_anonymous_requests_get_documented_answers(live_server, worker, settings):
    """The same without credentials: anonymous searches work, account-only routes answer 401 as documented."""
    settings.IMGSEARCH_SEARCH_RATE_ANON = settings.IMGSEARCH_SEARCH_RATE_USER = "100000/min"
    code, output = fuzz(live_server.url)
    print(output)
    assert code == 0, output[-6000:]
