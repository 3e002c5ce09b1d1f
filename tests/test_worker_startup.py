"""The worker refuses to start without usable weights, naming the setting and the path."""

import pytest

from .conftest import start_worker

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("weights", ["/nonexistent/weights.pth", "IMAGENET_BOGUS"])
def test_worker_with_bad_weights_exits_with_a_clear_message(worker_env, weights):
    """No silent fallback to random weights: the worker stops at once and says why."""
    proc = start_worker({**worker_env, "IMGSEARCH_WEIGHTS": weights})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "imgsearch worker cannot start" in out and "IMGSEARCH_WEIGHTS" in out and weights in out
