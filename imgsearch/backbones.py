"""The torchvision backbones a deployment may embed with (IMGSEARCH_MODEL, the admin's reindex form). Plain data:
settings validate against it, and workers/embedder.py builds them."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str  # torchvision.models builder name, also the IMGSEARCH_MODEL value
    family: str  # how features are taken from the network (see workers.embedder)
    dim: int  # length of the embedding vector


MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec("mobilenet_v2", "mobilenet_v2", 1280),
        ModelSpec("mobilenet_v3_large", "mobilenet_v3", 960),
        ModelSpec("resnet50", "resnet", 2048),
        ModelSpec("resnet152", "resnet", 2048),
        ModelSpec("efficientnet_b0", "efficientnet", 1280),
        ModelSpec("convnext_tiny", "convnext", 768),
        ModelSpec("vit_b_16", "vit", 768),
    )
}
