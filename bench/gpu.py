"""Embedding throughput on a GPU: the bare batched forward pass against decode + pre-process + forward.

The same comparison as the indexing part, on the GPU, with decoding kept from being the bottleneck: images
are decoded, resized and centre-cropped (uint8, as the weights' transforms do) by a pool of processes, one
per core, and normalised on the GPU; host-to-device copies come from pinned memory and overlap the model,
whose kernels run asynchronously while the pool decodes the next batch. The baseline runs the model on
tensors already on the device. Both use the production float32 model at batch 32 (the worker's) and 256.

Runs where torch sees a CUDA device; elsewhere the part reports that it was not measured. Without the dev
images (a machine without ../shared) it decodes synthetic photo-sized JPEGs; without the weights file, random
weights, which cost the same to run.

    python -m bench.gpu                      # on a GPU machine, prints the figures as JSON
    python -m bench.gpu --device cpu --images 96 --batches 32   # the same code on the CPU, to check it
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SHARED_WEIGHTS, labelled_subset  # noqa: E402

ARCH = "mobilenet_v2"
BATCHES = (32, 256)
TARGET_RATIO = 0.8

_transform = None  # the weights' resize and centre crop, in each decoding process


def _init_decoder(arch):
    global _transform
    import torchvision.models as tvm

    default = tvm.get_model_weights(arch).DEFAULT.transforms()
    _transform = (default.resize_size, default.crop_size, default.interpolation)


def _decode(path):
    """The model's input of one file as uint8 HWC, before normalisation (run in the pool)."""
    from torchvision.transforms import functional as TF

    from workers.imageio import load_rgb

    resize, crop, interpolation = _transform
    img = load_rgb(path, target_size=resize[0])
    img = TF.center_crop(TF.resize(img, resize, interpolation=interpolation, antialias=True), crop)
    return np.asarray(img, dtype=np.uint8)


def _synthetic_images(count, folder):
    """Photo-sized JPEGs of smooth noise, where the dev images are not on this machine."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
        path = Path(folder) / f"{i}.jpg"
        path.write_bytes(out.getvalue())
        paths.append(str(path))
    return paths


def _images(count, folder):
    try:
        return [str(p) for p, _ in labelled_subset(count)], "dev images"
    except (OSError, ValueError):
        return _synthetic_images(count, folder), "synthetic JPEGs (640 x 480)"


class _Model:
    """The embedder's network on a device, with the weights' normalisation done there."""

    def __init__(self, device):
        from workers.embedder import Embedder

        weights = str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else "random"
        self.embedder = Embedder(ARCH, weights, device=device)
        self.weights = weights if weights == "random" else "ImageNet (shared file)"
        self.device = self.embedder.device
        norm = self.embedder.preprocess
        self.mean = torch.tensor(norm.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(norm.std, device=self.device).view(1, 3, 1, 1)

    def to_input(self, uint8_nhwc):
        """uint8 NHWC (host) -> normalised float NCHW on the device."""
        if self.device.type == "cuda":
            uint8_nhwc = uint8_nhwc.pin_memory()
        x = uint8_nhwc.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def forward(self, x):
        from workers.embedder import _features

        feats, _ = _features(self.embedder.net, self.embedder.spec.family, x)
        return feats

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def bare_forward(model, inputs, batch):
    """Images/s of the model alone on inputs already on the device, after a warm-up batch."""
    batches = list(torch.split(inputs, batch))
    model.forward(batches[0])
    model.sync()
    started = time.perf_counter()
    for b in batches[1:]:
        model.forward(b)
    model.sync()
    return (len(inputs) - len(batches[0])) / (time.perf_counter() - started)


def pipeline(model, pool, paths, batch):
    """Images/s of decode (pool) + copy + normalise + forward over the files, after a warm-up batch."""
    model.forward(model.to_input(torch.from_numpy(np.stack(list(pool.map(_decode, paths[:batch]))))))
    model.sync()
    started, pending = time.perf_counter(), []
    for array in pool.map(_decode, paths[batch:], chunksize=8):
        pending.append(array)
        if len(pending) == batch:
            model.forward(model.to_input(torch.from_numpy(np.stack(pending))))
            pending = []
    if pending:
        model.forward(model.to_input(torch.from_numpy(np.stack(pending))))
    model.sync()
    return (len(paths) - batch) / (time.perf_counter() - started)


def decode_only(pool, paths):
    list(pool.map(_decode, paths[: 4 * pool._max_workers]))  # start every process (and its imports) first
    started = time.perf_counter()
    for _ in pool.map(_decode, paths, chunksize=8):
        pass
    return len(paths) / (time.perf_counter() - started)


def _agreement(model, inputs, paths, count=8):
    """Lowest cosine between this path's vectors and the worker's own (Embedder.embed) for a few images."""
    from workers.imageio import load_rgb

    embedder = model.embedder
    production, _ = embedder.embed([load_rgb(p, target_size=embedder.resize_size) for p in paths[:count]])
    ours = torch.nn.functional.normalize(model.forward(inputs[:count]).float(), dim=1).cpu().numpy()
    return round(float((production * ours).sum(axis=1).min()), 5)


def run(device="cuda", images=2048, batches=BATCHES, processes=None):
    """The figures, or {"skipped": why} where there is no such device."""
    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "no GPU on this machine (torch.cuda.is_available() is False)"}
    processes = processes or os.cpu_count() or 1
    with (
        tempfile.TemporaryDirectory() as folder,
        ProcessPoolExecutor(processes, initializer=_init_decoder, initargs=(ARCH,)) as pool,
    ):
        paths, source = _images(images, folder)
        if len(paths) < 2 * max(batches):  # a warm-up batch, then at least one timed batch
            raise ValueError(
                f"{len(paths)} images for batches of {max(batches)}: give --images {2 * max(batches)} or more"
            )
        decode_img_s = decode_only(pool, paths)  # also starts the pool before CUDA is, as forked children need
        model = _Model(device)
        name = torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "cpu"
        inputs = model.to_input(torch.from_numpy(np.stack(list(pool.map(_decode, paths, chunksize=8)))))
        agreement = _agreement(model, inputs, paths)
        rows = []
        for batch in batches:
            bare = bare_forward(model, inputs, batch)
            full = pipeline(model, pool, paths, batch)
            rows.append(
                {
                    "batch": batch,
                    "bare_forward_img_s": round(bare, 1),
                    "pipeline_img_s": round(full, 1),
                    "ratio": round(full / bare, 3),
                }
            )
            print(
                f"  gpu ({name}), batch {batch}: bare forward {bare:.0f} img/s, decode + forward {full:.0f} img/s "
                f"({full / bare:.2f}x)",
                flush=True,
            )
    return {
        "device": name,
        "model": ARCH,
        "weights": model.weights,
        "dtype": "float32",
        "images": len(paths),
        "source": source,
        "decode_processes": processes,
        "min_cosine_to_production": agreement,
        "decode_only_img_s": round(decode_img_s, 1),
        "runs": rows,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu, to check the code here")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batches", type=_sizes, default=BATCHES, help="comma-separated batch sizes (default 32,256)")
    parser.add_argument("--processes", type=int, default=0, help="decoding processes (default: one per core)")
    args = parser.parse_args()
    try:
        print(json.dumps(run(args.device, args.images, args.batches, args.processes or None), indent=2))
    except ValueError as exc:
        parser.error(str(exc))


def _sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be at least 1")
    return sizes


if __name__ == "__main__":
    main()
