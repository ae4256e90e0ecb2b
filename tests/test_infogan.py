"""InfoGAN: the information loss reaches the shared body and the generator, training raises the
MI lower bound, the code layout of `encode`, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import darla.vision as vision
from darla.errors import ConfigError
from darla.vision.base import apply_step
from darla.vision.models.infogan import InfoGAN

SHAPE = (32, 32, 3)
TINY = {"latent_dim": 3, "channels": (8, 8, 16, 16), "hidden": 64, "noise_dim": 8, "categories": 4}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny(**params: object) -> InfoGAN:
    torch.manual_seed(0)
    model = vision.build("infogan", image_shape=SHAPE, **{**TINY, **params})
    assert isinstance(model, InfoGAN)
    return model


def blobs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, 3)
        y, x = rng.integers(0, 22, 2)
        out[i, y : y + 10, x : x + 10] = rng.integers(0, 256, 3)
    return out


def optimizers(model: InfoGAN) -> dict[str, torch.optim.Optimizer]:
    return {
        k: torch.optim.Adam(s.params, lr=s.lr or 1e-3, betas=s.betas) for k, s in model.optimizers().items()
    }


def test_info_loss_updates_the_shared_body_and_the_generator() -> None:
    model = tiny()
    opts = optimizers(model)
    noise, cont, cat = model.sample_codes(16, torch.device("cpu"))
    fake = torch.sigmoid(model.generate(noise, cont, cat))
    _, mean, logvar, cat_logits = model.heads(model.body(fake))
    info, _, _ = model.info_loss(mean, logvar, cat_logits, cont, cat)
    body = [*model.encoder.convs.parameters(), *model.encoder.fc.parameters()]
    before = [p.detach().clone() for p in body]
    d_head = [p.detach().clone() for p in model.encoder.head.parameters()]
    apply_step(opts["discriminator"], info, {"info": info}, 0)
    # the Q loss alone moved the body shared with D (and left D's real/fake head alone)
    assert all(not torch.equal(a, p) for a, p in zip(before, body))
    assert all(torch.equal(a, p) for a, p in zip(d_head, model.encoder.head.parameters()))
    # the generator gets the info gradient too (live fakes)
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.decoder.parameters())
    # optimisers are disjoint: G's never holds D/Q parameters
    gen_ids = {id(p) for g in opts["generator"].param_groups for p in g["params"]}
    assert not gen_ids & {id(p) for p in [*model.encoder.parameters(), *model.q_head.parameters()]}


def test_training_raises_the_mutual_information_bound(tmp_path: Path) -> None:
    model = tiny(g_lr=1e-3)  # the paper's G rate: the tiny model learns within the budget
    opts = optimizers(model)
    x = model.to_float(torch.from_numpy(blobs(64)))
    model.train()
    mi = []
    gen = torch.Generator().manual_seed(0)
    for step in range(300):
        terms = model.train_step(x[torch.randint(64, (16,), generator=gen)], step, opts)
        mi.append(float(terms["mi_lower_bound"]))
    # L_I = H(c) - E[-log Q(c|x)]: starts below 0 (Q knows nothing), ends well above it
    assert np.mean(mi[:10]) < 0 < np.mean(mi[-30:]), (np.mean(mi[:10]), np.mean(mi[-30:]))
    assert np.mean(mi[-30:]) - np.mean(mi[:10]) > 1.0
    vision.save(model, tmp_path / "ig")
    loaded = vision.load(tmp_path / "ig")
    frames = blobs(5, seed=1)
    assert torch.equal(model.encode(frames), loaded.encode(frames))


def test_encode_is_continuous_means_then_categorical_probabilities() -> None:
    model = tiny(categorical=2)
    z = model.encode(blobs(6))
    assert z.shape == (6, 3 + 2 * 4) == (6, model.feature_dim)
    probs = z[:, 3:].reshape(6, 2, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(6, 2), atol=1e-5) and bool((probs >= 0).all())
    assert model.decode(z).shape == (6, 3, 32, 32)
    with pytest.raises(ConfigError, match=r"infogan\.decode expects 11 code columns"):
        model.decode(torch.zeros(2, 5))
    with pytest.raises(ConfigError, match="categories must be >= 2"):
        tiny(categories=1)
