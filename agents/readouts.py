"""What a frozen policy reads from a vision model: its latent code (DARLA) or an encoder layer, through
an MLP or a small conv head. One name per readout ('', 'conv1', 'conv1+cnn') for folders and labels."""

from __future__ import annotations

from typing import Literal, get_args

from darla.errors import ConfigError
from darla.registry import unknown_name_message

FeatureNorm = Literal["none", "standardize"]
FEATURE_NORMS: tuple[str, ...] = get_args(FeatureNorm)
FeatureHead = Literal["mlp", "cnn"]
FEATURE_HEADS: tuple[str, ...] = get_args(FeatureHead)
LATENT = "latent"
"""A readout's name for the latent code (DARLA's features, `feature_layer` empty)."""


def readout_name(layer: str, head: str) -> str:
    """What a frozen policy reads, as one word: '' for DARLA's default (the latent code, an MLP),
    else 'conv1', 'fc', 'conv1+cnn'. Act folders and report labels carry it, so two readouts of one
    vision model stay apart."""
    if not layer and head == "mlp":
        return ""
    return (layer or LATENT) + ("" if head == "mlp" else f"+{head}")


def parse_readout(spec: str) -> tuple[str, str]:
    """'conv1+cnn' -> ('conv1', 'cnn'), 'conv1' -> ('conv1', 'mlp'), 'latent' -> ('', 'mlp'): the
    `feature_layer` and `feature_head` of a readout named as `readout_name` names it. Layer names are
    the vision model's, checked by `darla run` before any stage and by act when it loads the model."""
    layer, plus, head = spec.partition("+")
    if not layer or (plus and not head):
        raise ConfigError(
            f"readout {spec!r} is not '<layer>' or '<layer>+<head>' (e.g. {LATENT}, conv1, conv1+cnn)"
        )
    head = head or "mlp"
    if head not in FEATURE_HEADS:
        raise ConfigError(unknown_name_message(f"head of readout {spec!r}", head, list(FEATURE_HEADS)))
    layer = "" if layer == LATENT else layer
    if head == "cnn" and not layer:
        raise ConfigError(
            f"readout {spec!r}: the cnn head reads a convolutional map, not the latent code; "
            "name a conv layer (e.g. conv1+cnn)"
        )
    return layer, head
