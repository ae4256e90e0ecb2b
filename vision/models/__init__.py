"""The zoo's methods, one module each; importing this package registers them in `MODELS`.

A new method is one file here (a config dataclass, a `VisionModel` subclass with its loss and
`@MODELS.register(name)`) plus its import below; a method in another package registers through the
`darla.models` entry point instead (see `darla.registry`).
"""

from darla.vision.models import (
    ae,
    beta_tcvae,
    beta_vae_capacity,
    beta_vae_dae,
    dae,
    dc_ign,
    factor_vae,
    iin,
    infogan,
    scan,
    vae,
)

__all__ = [
    "ae",
    "beta_tcvae",
    "beta_vae_capacity",
    "beta_vae_dae",
    "dae",
    "dc_ign",
    "factor_vae",
    "iin",
    "infogan",
    "scan",
    "vae",
]
