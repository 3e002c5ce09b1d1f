"""The embedding model: a torchvision backbone, loaded once per worker process and run in batches.

This is the only module that imports torch. An embedding is the backbone's globally pooled last feature
map, L2-normalised; the same forward pass gives the ImageNet classifier's likeliest category for the auto tag.
"""

import ctypes
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import models as tvm

from imgsearch.backbones import MODELS

from .categories import CLASS_CATEGORY, NAMES, tag_for

log = logging.getLogger(__name__)


def keep_freed_memory():
    """Let glibc keep freed large blocks for reuse instead of unmapping them.

    A forward pass allocates activations of tens of MB; by default glibc returns each to the system when it
    is freed and the next batch page-faults it in again, zeroed. On the 2-core development machine that made
    MobileNetV2 at batch 32 run at 29 images/s instead of 97 (one torch thread). The worker keeps its peak
    memory instead. Not glibc (musl, macOS): nothing to do.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30))


keep_freed_memory()  # only worker processes (and benchmarks) import this module


class WeightsError(RuntimeError):
    """The configured weights cannot be found or do not fit the model."""


@dataclass(frozen=True)
class Prediction:
    label: str  # the ImageNet class the classifier finds likeliest within `category`
    category: str  # the likeliest short readable category (workers/categories.py)
    score: float  # the category's probability: the sum over its classes

    @property
    def tag(self):
        """The automatic tag: the category where the classifier is sure enough of it, else ""."""
        return tag_for(self.category, self.score)

    @property
    def auto_tags(self):
        """The image's automatic tags as IndexedImage stores them: [tag], or [] where there is none."""
        tag = self.tag
        return [tag] if tag else []


_CLASS_CATEGORY = torch.tensor(CLASS_CATEGORY)


def _predictions(logits, class_names):
    """Each image's likeliest category, its classes' probabilities summed, with its likeliest class in it."""
    probs = logits.float().softmax(dim=1).cpu()
    by_category = torch.zeros(len(probs), len(NAMES)).index_add_(1, _CLASS_CATEGORY, probs)
    scores, best = by_category.max(dim=1)
    classes = probs.masked_fill(_CLASS_CATEGORY[None, :] != best[:, None], -1.0).argmax(dim=1)
    return [
        Prediction(class_names[c], NAMES[k], round(float(p), 4))
        for c, k, p in zip(classes.tolist(), best.tolist(), scores.tolist())
    ]


def _features(net, family, x):
    """(pooled features, classifier logits) for a batch."""
    if family in ("mobilenet_v2", "mobilenet_v3", "efficientnet"):
        f = F.adaptive_avg_pool2d(net.features(x), 1).flatten(1)
        return f, net.classifier(f)
    if family == "resnet":
        for layer in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
        f = net.avgpool(x).flatten(1)
        return f, net.fc(f)
    if family == "convnext":
        f = net.classifier[1](net.classifier[0](net.avgpool(net.features(x))))  # LayerNorm2d, Flatten
        return f, net.classifier[2](f)
    if family == "vit":
        x = net._process_input(x)
        x = torch.cat([net.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        f = net.encoder(x)[:, 0]
        return f, net.heads(f)
    raise ValueError(f"unknown model family {family}")


def load_state_dict(arch, weights):
    """(state_dict or None for random, identity string) for IMGSEARCH_WEIGHTS; raises WeightsError."""
    if weights == "random":
        return None, "random"
    looks_like_path = "/" in weights or weights.endswith((".pth", ".pt"))
    if looks_like_path:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"IMGSEARCH_WEIGHTS points at {path}, which is not a file.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"IMGSEARCH_WEIGHTS={path} cannot be loaded as a state_dict: {exc}") from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return state, f"sha256-{digest}"
    enum = tvm.get_model_weights(arch)
    try:
        member = enum[weights.split(".")[-1]]
    except KeyError:
        names = ", ".join(m.name for m in enum)
        raise WeightsError(
            f"IMGSEARCH_WEIGHTS={weights!r} is neither a file path nor one of {arch}'s weights: {names}, DEFAULT."
        ) from None
    try:
        return member.get_state_dict(progress=False), member.name
    except Exception as exc:
        raise WeightsError(
            f"IMGSEARCH_WEIGHTS={weights!r}: downloading {member.url} failed ({exc}). Without a network, "
            "download the file elsewhere and set IMGSEARCH_WEIGHTS to its path."
        ) from None


def check_weights(arch, weights):
    """Check that the weights exist and fit the architecture, without running any computation."""
    state, _ = load_state_dict(arch, weights)
    if state is None:
        return
    with torch.device("meta"):
        expected = tvm.get_model(arch, weights=None).state_dict()
    try:
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    except AttributeError:
        raise WeightsError(f"IMGSEARCH_WEIGHTS={weights}: the file does not hold a state_dict.") from None
    if missing or unexpected or wrong:
        raise WeightsError(
            f"IMGSEARCH_WEIGHTS={weights} does not fit IMGSEARCH_MODEL={arch}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected and {len(wrong)} mis-shaped tensors "
            f"(e.g. {(missing + unexpected + wrong)[:3]})."
        )


class Embedder:
    def __init__(self, arch, weights, device="auto"):
        if arch not in MODELS:
            raise WeightsError(f"IMGSEARCH_MODEL={arch!r} is not one of {', '.join(MODELS)}.")
        self.spec = MODELS[arch]
        state, identity = load_state_dict(arch, weights)
        if state is None:
            torch.manual_seed(0)  # random weights (tests only) are at least reproducible
        net = tvm.get_model(arch, weights=None)
        if state is not None:
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise WeightsError(f"IMGSEARCH_WEIGHTS={weights} does not fit {arch}: {str(exc)[:300]}") from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        default = tvm.get_model_weights(arch).DEFAULT
        self.preprocess = default.transforms()  # resize, centre crop, normalise, as the weights were trained
        self.resize_size = self.preprocess.resize_size[0]
        self.categories = default.meta["categories"]
        self.key = f"{arch}:{identity}"
        self.weights = weights

    @property
    def dim(self):
        return self.spec.dim

    def embed(self, images):
        """L2-normalised embeddings (float32, one row per PIL image) and the top ImageNet prediction of each."""
        return self.embed_prepared([self.prepare(img) for img in images])

    def prepare(self, image):
        """The model's input tensor for a PIL image (resized, cropped, normalised); safe to call from threads."""
        return self.preprocess(image)

    @torch.inference_mode()
    def embed_prepared(self, tensors):
        """embed() for tensors from prepare(), so decoding threads can prepare images while the model runs."""
        batch = torch.stack(tensors).to(self.device)
        feats, logits = _features(self.net, self.spec.family, batch)
        feats = feats.float()
        # An all-zero feature vector has no direction; give it a fixed one rather than NaN distances.
        flat = feats.norm(dim=1, keepdim=True) < 1e-12
        feats = torch.where(flat, torch.ones_like(feats), feats)
        vectors = F.normalize(feats, dim=1).cpu().numpy().astype(np.float32)
        return vectors, _predictions(logits, self.categories)


# Models loaded in this process, least recently used first: the active one, and one being reindexed to.
_cache = OrderedDict()
_CACHE_SIZE = 2
_lock = threading.Lock()


def get_embedder(arch=None, weights=None):
    """The Embedder for (arch, weights), loaded once per process; the configured model by default."""
    from django.conf import settings

    spec = (arch or settings.IMGSEARCH_MODEL, weights or settings.IMGSEARCH_WEIGHTS)
    with _lock:
        embedder = _cache.get(spec)
        if embedder is None:
            embedder = Embedder(*spec, settings.IMGSEARCH_DEVICE)
            log.info("loaded %s on %s", embedder.key, embedder.device)
            _cache[spec] = embedder
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        _cache.move_to_end(spec)
        return embedder


def set_threads(count):
    """Cap torch's intra-op threads (0 leaves torch's default), so workers sharing few cores do not thrash."""
    if count:
        torch.set_num_threads(count)
