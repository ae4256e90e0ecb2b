"""The vision model zoo: one interface (`VisionModel`), one registry (`MODELS`), build/save/load.

model = darla.vision.build("beta_vae", image_shape=(64, 64, 3), beta=4.0)
model = darla.vision.load("runs/exp1/see/beta_vae_dae")   # eval mode, frozen
z = model.encode(frames_uint8)                            # (N, latent_dim) posterior means
"""

from darla.vision import models as _models  # noqa: F401  (registers the zoo)
from darla.vision.base import MODELS, ModelConfig, OptimSpec, VisionModel, build
from darla.vision.checkpoint import checkpoint_path, load, save, see_folder

__all__ = [
    "MODELS",
    "ModelConfig",
    "OptimSpec",
    "VisionModel",
    "build",
    "checkpoint_path",
    "load",
    "save",
    "see_folder",
]
