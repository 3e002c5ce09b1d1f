"""The layout's rules, checked on the code itself: the web side never imports the workers, the web process loads
neither torch nor OpenCV, every task the web side sends exists, and no module grows past 400 lines."""

import ast
import subprocess
import sys

from .conftest import ROOT

WEB_SIDE = ("search", "favorites", "accounts", "imgsearch")


def python_files(*folders):
    for folder in folders:
        yield from (path for path in (ROOT / folder).rglob("*.py") if "migrations" not in path.parts)


def imported_modules(path):
    """The modules a file imports (absolute names; relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            yield f"{base}.{node.module}".strip(".") if node.module else base


def test_the_web_side_never_imports_the_workers():
    """No module of search/, favorites/, accounts/ or imgsearch/ imports workers/ (tasks are sent by name)."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files(*WEB_SIDE)
        for name in imported_modules(path)
        if name == "workers" or name.startswith("workers.")
    ]
    assert offenders == []


def test_torch_and_opencv_are_imported_in_their_own_modules_only():
    """torch (and torchvision) in workers/embedder.py, OpenCV in workers/ranking/ alone."""
    torch_users, cv2_users = set(), set()
    for path in python_files(*WEB_SIDE, "workers"):
        names = {name.split(".")[0] for name in imported_modules(path)}
        if names & {"torch", "torchvision"}:
            torch_users.add(str(path.relative_to(ROOT)))
        if "cv2" in names:
            cv2_users.add(str(path.relative_to(ROOT)))
    assert torch_users == {"workers/embedder.py"}
    assert cv2_users and all(user.startswith("workers/ranking/") for user in cv2_users)


def test_the_web_process_loads_neither_torch_nor_opencv():
    """A fresh process that loads the URL configuration (and with it every view, API and admin module) and answers a
    page holds no torch, torchvision or OpenCV module, and of workers/ only the app config Django itself loads."""
    script = (
        "import sys, django; django.setup()\n"
        "import imgsearch.urls, imgsearch.wsgi\n"
        "from django.urls import resolve; resolve('/'); resolve('/admin/'); resolve('/api/v1/searches/')\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'cv2', 'workers'))))\n"
    )
    env = {
        "DJANGO_SETTINGS_MODULE": "imgsearch.settings",
        "DEBUG": "1",
        "DATABASE_URL": "postgresql://x@localhost/x",
        "REDIS_URL": "redis://localhost:1/0",
        "PATH": "/usr/bin:/bin",
    }
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == ["workers", "workers.apps", "workers.signals"]


def test_every_task_the_web_side_sends_is_a_worker_task():
    """search/queue.py names only tasks workers/tasks.py defines (a typo would leave work unsent for ever)."""
    import workers.tasks  # noqa: F401  (registers the tasks)
    from imgsearch.celery import app
    from search import queue

    assert set(queue.NAMES) <= set(app.tasks)


def test_no_module_grows_past_400_lines():
    """Small rooms: every Python file outside migrations and tests holds at most 400 lines."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in python_files(*WEB_SIDE, "workers", "bench")
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}
