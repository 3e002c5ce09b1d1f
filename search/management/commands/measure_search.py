"""python manage.py measure_search [--url URL] [--n 20]: time real searches from POST to done over HTTP.

Each query is an edited copy (cropped, rescaled, JPEG re-encoded) of a random indexed image, posted to a
running server (e.g. `make run`); it prints the median and 95th percentile and the server's own split.
"""

import io
import json
import random
import statistics
import time
import urllib.request
import uuid

from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from search.models import IndexedImage


def edited_copy(path):
    with Image.open(path) as img:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
        w, h = img.size
        img = img.crop((w // 12, h // 12, w - w // 12, h - h // 12)).resize((max(1, w * 2 // 3), max(1, h * 2 // 3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=75)
    return out.getvalue()


def post_image(url, data):
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Command(BaseCommand):
    help = "Time searches from POST to done against a running server."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--n", type=int, default=20)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, url, n, seed, **options):
        ids = list(IndexedImage.objects.filter(status="ready").values_list("id", flat=True))
        if not ids:
            raise CommandError("The index is empty; run index_images first.")
        picks = IndexedImage.objects.in_bulk(random.Random(seed).sample(ids, min(n, len(ids))))
        totals, server, hits = [], [], 0
        for image in picks.values():
            data = edited_copy(image.file.path)
            started = time.perf_counter()
            job = post_image(f"{url}/api/v1/searches/", data)
            while job["status"] not in ("done", "failed"):  # each GET is answered when the job ends (?wait)
                job = get_json(f"{url}/api/v1/searches/{job['id']}/?wait=10")
            totals.append((time.perf_counter() - started) * 1000)
            if job["status"] == "failed":
                raise CommandError(f"search failed: {job['error']}")
            server.append(job["timings"])
            hits += bool(job["results"]) and job["results"][0]["image_id"] == image.id
        self.stdout.write(f"{len(totals)} searches against {len(ids)} indexed images")
        self.stdout.write(
            f"POST to done: median {statistics.median(totals):.0f} ms, p95 {percentile(totals, 0.95):.0f} ms"
        )
        for key in ("queued_ms", "embed_ms", "query_ms", "rerank_ms", "total_ms"):
            values = [t[key] for t in server if t.get(key) is not None]
            if values:
                self.stdout.write(f"  server {key}: median {statistics.median(values):.1f}")
        self.stdout.write(f"original ranked first for {hits}/{len(totals)} edited copies")
