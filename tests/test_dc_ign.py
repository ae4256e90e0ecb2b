"""DC-IGN: the clamp's replaced gradient, one-factor batches and their ratio, training, save/load."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

import darla.vision as vision
from darla.errors import ConfigError
from darla.vision.factor_batches import OneFactorSampler
from darla.vision.models.dc_ign import DCIGN, clamp_to_mean

SHAPE = (32, 32, 3)
TINY = {"latent_dim": 6, "channels": (8, 8, 16, 16), "hidden": 64}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class Boxes:
    """A tiny ground truth: a coloured square on a grey background (colour, x, y, size)."""

    factor_names = ("color", "x", "y", "size")
    factor_sizes = (4, 4, 4, 2)
    image_shape = SHAPE
    colors = np.array([[230, 30, 30], [30, 200, 30], [30, 60, 230], [230, 220, 40]], np.uint8)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, k, n) for k in self.factor_sizes], 1)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.full((len(factors), 32, 32, 3), 90, np.uint8)
        for i, (c, x, y, s) in enumerate(factors):
            side = 8 + 6 * int(s)
            out[i, 2 + 4 * y : 2 + 4 * y + side, 2 + 4 * x : 2 + 4 * x + side] = self.colors[c]
        return out

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        f = self.sample_factors(n, rng)
        return f, self.sample_observations_from_factors(f, rng)


def model(**params: object) -> DCIGN:
    torch.manual_seed(0)
    m = vision.build(
        "dc_ign", image_shape=SHAPE, **{**TINY, "pool_batches": 16, "frames_ratio": 0.0, **params}
    )
    assert isinstance(m, DCIGN)
    m.set_ground_truth(Boxes())
    return m


def test_clamped_units_get_the_difference_from_the_mean_as_gradient() -> None:
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, False, True, False])
    out = clamp_to_mean(z, mask)
    mean = z.detach().mean(0)
    # forward: clamped columns are the batch mean, the others pass through
    assert torch.allclose(out[:, 0], mean[0].expand(5)) and torch.allclose(out[:, 2], mean[2].expand(5))
    assert torch.equal(out[:, [1, 3]], z[:, [1, 3]])
    upstream = torch.randn(5, 4, dtype=torch.float64)
    out.backward(upstream)
    assert z.grad is not None
    # backward: clamped units get exactly z - mean (not the decoder's gradient), free units the upstream one
    assert torch.equal(z.grad[:, [0, 2]], (z.detach() - mean)[:, [0, 2]])
    assert torch.equal(z.grad[:, [1, 3]], upstream[:, [1, 3]])


def test_only_the_active_factor_varies_and_appearance_stays_in_allowed_rows() -> None:
    rng = np.random.default_rng(0)
    sampler = OneFactorSampler((4, 4, 4, 2))
    rows = sampler.sample(64, [1], rng)
    assert len(np.unique(rows[:, 1])) > 1
    assert all(len(np.unique(rows[:, c])) == 1 for c in (0, 2, 3))
    # columns 0 and 3 restricted to three (colour, size) combinations; colour varies only with size 0
    allowed = np.array([[0, 0], [1, 0], [2, 1]])
    sampler = OneFactorSampler((4, 4, 4, 2), allowed, [0, 3])
    assert sampler.can_vary([0]) and not sampler.can_vary([3]) and sampler.can_vary([1])
    for _ in range(20):
        rows = sampler.sample(32, [0], rng)
        combos = {tuple(r) for r in rows[:, [0, 3]].tolist()}
        assert combos <= {(0, 0), (1, 0), (2, 1)}
        assert len(np.unique(rows[:, 3])) == 1 and all(len(np.unique(rows[:, c])) == 1 for c in (1, 2))


def test_batch_types_follow_the_ratio_and_clamp_the_other_units() -> None:
    m = model(factors=("x", "y"), intrinsic=("color", "size"), intrinsic_ratio=10.0)
    assert [t.name for t in m.types] == ["x", "y", "intrinsic"]
    assert [t.units for t in m.types] == [(0, 1), (1, 2), (2, 6)]
    rng = np.random.default_rng(1)
    counts = np.zeros(3)
    for _ in range(600):
        t, _ = m.sample_batch(4, rng)
        counts[t] += 1
    # 1 : 1 : 10
    assert abs(counts[2] / 600 - 10 / 12) < 0.05 and abs(counts[0] / counts[1] - 1) < 0.5
    assert m.clamp_mask(0).tolist() == [False, True, True, True, True, True]
    assert m.clamp_mask(2).tolist() == [True, True, False, False, False, False]
    with pytest.raises(ConfigError, match="unknown factor 'colour'"):
        model(factors=("colour",))
    with pytest.raises(ConfigError, match="need 7 latents"):
        model(units_per_factor=2, factors=("x", "y", "size"), intrinsic=("color",), latent_dim=6)


def test_without_intrinsic_factors_every_unit_belongs_to_a_block(caplog: pytest.LogCaptureFixture) -> None:
    """A unit in no block is clamped in every batch and never learns (SeekAvoid's collapse)."""
    m = model()  # no intrinsic factors: the factor blocks share all 6 units
    units = [t.units for t in m.types]
    assert units[0][0] == 0 and units[-1][1] == TINY["latent_dim"]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(units))  # contiguous, no gap
    assert max(b - a for a, b in units) - min(b - a for a, b in units) <= 1
    free = np.zeros(TINY["latent_dim"], bool)
    for t in range(len(m.types)):
        free |= ~m.clamp_mask(t).numpy()
    assert free.all()
    with caplog.at_level("WARNING"):
        model(units_per_factor=1, factors=("x", "y"))
    assert "clamped in every batch and never learn" in caplog.text


def test_inactive_units_collapse_and_loss_decreases(tmp_path: Path) -> None:
    m = model(recon="gaussian")  # squared error: floor 0, so "lower" has a clear margin
    opts = {k: torch.optim.Adam(s.params, lr=3e-3) for k, s in m.optimizers().items()}
    frames = Boxes().sample(64, np.random.default_rng(5))[1]
    x = m.to_float(torch.from_numpy(frames))

    def measured() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(m.loss(x)[0])

    before = measured()
    spreads = []
    m.train()
    for step in range(150):
        spreads.append(float(m.train_step(x[:16], step, opts)["clamped_var"]))
    after = measured()
    assert after < 0.8 * before, (before, after)
    assert np.mean(spreads[-20:]) < np.mean(
        spreads[:20]
    )  # the replaced gradient pulls clamped units together
    vision.save(m, tmp_path / "dc")
    loaded = vision.load(tmp_path / "dc")
    assert torch.equal(m.encode(frames), loaded.encode(frames))
    assert m.encode(frames).shape == (64, TINY["latent_dim"])


def test_without_ground_truth_the_error_says_what_to_set() -> None:
    m = vision.build("dc_ign", image_shape=SHAPE, **TINY)
    opts = {k: torch.optim.Adam(s.params) for k, s in m.optimizers().items()}
    with pytest.raises(ConfigError, match="env="):
        m.train_step(torch.rand(4, 3, 32, 32), 0, opts)


def test_tied_appearance_factors_form_one_batch_type() -> None:
    """Allowed domains that change colour and size only together (like DARLA's rooms: wall +
    floor) give one batch type varying both, not two that could never vary."""
    allowed = np.array([[0, 0], [1, 1], [2, 1]])  # rows 1-2 differ in colour alone; 0-1 in both
    sampler = OneFactorSampler((4, 4, 4, 2), allowed, [0, 3])
    assert sampler.tied_groups() == [(0,)]
    sampler = OneFactorSampler((4, 4, 4, 2), np.array([[0, 0], [1, 1]]), [0, 3])
    assert sampler.tied_groups() == [(0, 3)] and not sampler.can_vary([0]) and sampler.can_vary([0, 3])
    m = vision.build("dc_ign", image_shape=SHAPE, **{**TINY, "intrinsic": ("y",)})
    assert isinstance(m, DCIGN)
    m.set_ground_truth(Boxes(), np.array([[0, 0], [1, 1]]), [0, 3])
    assert [t.name for t in m.types] == ["x", "color+size", "intrinsic"]
    rows = m._sampler.sample(16, m.types[1].columns, np.random.default_rng(0))
    assert {tuple(r) for r in rows[:, [0, 3]].tolist()} <= {(0, 0), (1, 1)}
    # by default the appearance factors are the intrinsic block and each pose factor gets one unit
    m = vision.build("dc_ign", image_shape=SHAPE, **TINY)
    assert isinstance(m, DCIGN)
    m.set_ground_truth(Boxes(), np.array([[0, 0], [1, 1]]), [0, 3])
    assert [(t.name, t.columns, t.units) for t in m.types] == [
        ("x", (1,), (0, 1)),
        ("y", (2,), (1, 2)),
        ("intrinsic", (0, 3), (2, TINY["latent_dim"])),
    ]


def test_frames_ratio_mixes_in_the_trainers_own_frames_with_every_unit_free() -> None:
    """`frames_ratio` trains on the see stage's frames at its share of steps, none of their units
    clamped; at 0 (the paper's) every step is a pooled one-factor batch with clamped units."""

    def frames_steps(m: DCIGN, steps: int) -> float:
        opts = {k: torch.optim.Adam(s.params, lr=1e-3) for k, s in m.optimizers().items()}
        m.train()
        batch = torch.rand(8, 3, 32, 32)
        # no clamped unit = no spread of clamped units: only a plain batch of the frames gives exactly 0
        return float(
            np.mean([float(m.train_step(batch, s, opts)["clamped_var"]) == 0.0 for s in range(steps)])
        )

    mixed = model(frames_ratio=2.0)
    share = frames_steps(mixed, 300)
    assert mixed.frames_share() == pytest.approx(2.0 / (2.0 + sum(t.weight for t in mixed.types)))
    assert abs(share - mixed.frames_share()) < 0.1, (share, mixed.frames_share())
    assert frames_steps(model(), 50) == 0.0
    assert vision.build("dc_ign", image_shape=SHAPE, **TINY).config.frames_ratio == 15.0  # RL default
    with pytest.raises(ConfigError, match="frames_ratio"):
        model(frames_ratio=-1.0)
