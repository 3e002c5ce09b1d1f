"""Resident memory: a worker process with the model loaded, and a web process (which must not import torch).

Each is measured in a fresh subprocess, so nothing loaded by the benchmark itself is counted.
"""

import json
import os
import subprocess
import sys

from bench.common import ROOT

WORKER = """
import json, psutil, sys
sys.path.insert(0, ".")
from PIL import Image
from bench.common import load_embedder
embedder = load_embedder()
embedder.embed([Image.new("RGB", (640, 480), "white")])
search = psutil.Process().memory_info().rss / 2**20
embedder.embed([Image.new("RGB", (640, 480), "white")] * 32)  # an indexing batch: its memory is kept for the next
print(json.dumps({"rss_mb": search, "rss_after_batch_mb": psutil.Process().memory_info().rss / 2**20,
                  "torch": "torch" in sys.modules}))
"""

WEB = """
import json, psutil, sys, django
django.setup()
from django.test import Client
import imgsearch.urls  # every view module
status = Client().get("/", HTTP_HOST="localhost").status_code
print(json.dumps({"rss_mb": psutil.Process().memory_info().rss / 2**20, "torch": "torch" in sys.modules, "status": status}))
"""


def measure(code):
    """The JSON line a snippet prints, run in a fresh interpreter from the repository root."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "imgsearch.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run():
    """RSS of the worker (model loaded, one image embedded) and of the web process (one page served)."""
    worker, web = measure(WORKER), measure(WEB)
    print(
        f"  memory: worker {worker['rss_mb']:.0f} MB ({worker['rss_after_batch_mb']:.0f} MB after a batch of 32), "
        f"web {web['rss_mb']:.0f} MB (torch imported: {web['torch']})",
        flush=True,
    )
    return {
        "worker_rss_mb": round(worker["rss_mb"], 1),
        "worker_rss_after_batch_mb": round(worker["rss_after_batch_mb"], 1),
        "web_rss_mb": round(web["rss_mb"], 1),
        "web_imports_torch": web["torch"],
        "web_status": web["status"],
    }
