"""IIN: exact invertibility and log-determinant, ActNorm's data init, the pair loss, the zoo surface."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import darla.vision as vision
from darla.config import dump_yaml
from darla.errors import ConfigError
from darla.vision.flows import ActNorm, AffineCoupling, VectorFlow
from darla.vision.models import iin as iin_module
from darla.vision.models.iin import IIN, block_masks, estimate_dims, pair_correlations, pair_nll


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is fastest and does not fight other jobs for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize(module: torch.nn.Module, std: float = 0.3, seed: int = 0) -> None:
    """Non-trivial weights (couplings are zero-initialised, i.e. the identity, otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


# ---------------------------------------------------------------------------- flow pieces
def test_flow_inverse_is_exact() -> None:
    torch.manual_seed(0)
    flow = VectorFlow(7, n_blocks=4, hidden=32, seed=1)
    flow(torch.randn(64, 7) * 3 + 1)  # data-init the ActNorms
    randomize(flow, std=0.1)
    flow.eval()
    z = torch.randn(128, 7) * 2
    y, _ = flow(z)
    assert not torch.allclose(y, z, atol=1e-2)  # the flow does something
    assert torch.allclose(flow.inverse(y), z, atol=1e-5), (flow.inverse(y) - z).abs().max()


def test_logdet_matches_bruteforce_jacobian() -> None:
    flow = VectorFlow(5, n_blocks=3, hidden=16, scale_bound=1.5, seed=2).double()
    randomize(flow, std=0.4, seed=3)
    flow.eval()
    z = torch.randn(4, 5, dtype=torch.float64)
    _, logdet = flow(z)
    for i in range(len(z)):
        jac = torch.autograd.functional.jacobian(lambda x: flow(x[None])[0][0], z[i])
        sign, brute = torch.linalg.slogdet(jac)
        assert sign > 0
        assert abs(float(brute) - float(logdet[i].detach())) < 1e-8
    assert logdet.abs().max() > 0.1  # a non-trivial volume change was checked


def test_coupling_scale_is_bounded() -> None:
    coupling = AffineCoupling(6, hidden=8, scale_bound=0.5)
    randomize(coupling, std=5.0)
    _, logdet = coupling(torch.randn(32, 6) * 10)
    assert logdet.abs().max() <= 0.5 * 6 + 1e-5  # |s| <= bound in each of the 6 dims


def test_actnorm_data_init_gives_zero_mean_unit_variance() -> None:
    norm = ActNorm(4)
    x = torch.randn(256, 4) * torch.tensor([0.1, 2.0, 5.0, 30.0]) + torch.tensor([3.0, -1.0, 0.0, 100.0])
    y, logdet = norm(x)
    assert torch.allclose(y.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert torch.allclose(logdet, -torch.log(x.std(0, unbiased=False)).sum().expand(256), atol=1e-4)
    # the second batch does not re-initialise
    y2, _ = norm(x * 2)
    assert torch.allclose(y2.std(0, unbiased=False), 2 * torch.ones(4), atol=1e-3)
    assert int(norm.initialized) == 1


# ---------------------------------------------------------------------------- pair model
def test_pair_correlations_and_dimension_estimate() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 6, generator=g)
    b = torch.randn(2000, 6, generator=g)
    b[:, :2] = a[:, :2]  # two shared dimensions
    corr = pair_correlations(a, b)
    assert torch.allclose(corr[:2], torch.ones(2), atol=1e-5)
    assert corr[2:].abs().max() < 0.1
    const = torch.ones(10, 3)
    assert torch.equal(pair_correlations(const, const), torch.zeros(3))  # constant dims score 0
    # softmax over [s_0, s_1, s_2]: equal s_0 and s_1 share the space, s_2 gets the minimum 1
    assert estimate_dims([3.0, -5.0], total=8, residual_score=3.0) == [3, 1]
    assert estimate_dims([2.0, 2.0], total=10, residual_score=-50.0) == [5, 5]
    assert estimate_dims([1.0, 1.0, 1.0], total=8) == [1, 1, 1]  # the paper's s_0 = N dominates
    with pytest.raises(ConfigError, match="at least 3"):
        estimate_dims([1.0, 1.0, 1.0], total=2)


def synthetic_pairs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes z = A [u1, u2, noise] (two 2-d factors, mixed); pairs share u1 (f=0) or u2 (f=1)."""
    mix = torch.linalg.qr(torch.randn(6, 6, generator=g))[0] * torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0, 0.7])
    ua, ub = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    f = torch.randint(0, 2, (n,), generator=g)
    shared = torch.where(f[:, None] == 0, torch.arange(6) < 2, (torch.arange(6) >= 2) & (torch.arange(6) < 4))
    ub = torch.where(shared, ua, ub)
    return ua @ mix.T, ub @ mix.T, f


def test_pair_loss_decreases_and_disentangles() -> None:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    za, zb, f = synthetic_pairs(2048, g)
    flow = VectorFlow(6, n_blocks=4, hidden=64, seed=0)
    masks = block_masks([2, 2], 6)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)

    def loss_on(idx: torch.Tensor) -> torch.Tensor:
        y, ld = flow(torch.cat([za[idx], zb[idx]]))
        n = len(idx)
        return pair_nll(y[:n], y[n:], ld[:n], ld[n:], masks[f[idx]], 0.975).mean()

    losses = []
    for _ in range(250):
        idx = torch.randint(0, len(f), (256,), generator=g)
        loss = loss_on(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-20:]) < np.mean(losses[:5]) - 3.0, (losses[:5], losses[-20:])
    # block 0 is shared by f=0 pairs and independent in f=1 pairs (and vice versa for block 1)
    with torch.no_grad():
        ya, _ = flow(za)
        yb, _ = flow(zb)
    c0 = pair_correlations(ya[f == 0], yb[f == 0])
    c1 = pair_correlations(ya[f == 1], yb[f == 1])
    assert c0[:2].mean() > 0.8 and c1[2:4].mean() > 0.8
    assert c0[2:4].abs().mean() < 0.3 and c1[:2].abs().mean() < 0.3


def test_pair_nll_is_the_stated_gaussian() -> None:
    ya, yb = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.4, 2.0]])
    zero = torch.zeros(1)
    shared = torch.tensor([[True, False]])
    sigma = 0.9
    normal = torch.distributions.Normal
    expected = -(
        normal(0, 1).log_prob(ya).sum()
        + normal(sigma * 0.5, math.sqrt(1 - sigma)).log_prob(torch.tensor(0.4))
        + normal(0, 1).log_prob(torch.tensor(2.0))
    )
    got = pair_nll(ya, yb, zero, zero + 0.25, shared, sigma)
    assert torch.allclose(got, expected - 0.25)


# ---------------------------------------------------------------------------- the zoo model
class Blocks:
    """A tiny ground truth: a coloured square (3 colours) at one of 4 x-positions, 2 sizes."""

    factor_names = ("colour", "posx", "size", "constant")
    factor_sizes = (3, 4, 2, 1)
    image_shape = (16, 16, 3)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.zeros((len(factors), 16, 16, 3), np.uint8)
        for i, (c, x, s, _) in enumerate(factors):
            w = 3 + 3 * int(s)
            out[i, 4 : 4 + w, 2 + 2 * int(x) : 2 + 2 * int(x) + w, int(c)] = 255
        return out


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    base = vision.build("ae", image_shape=(16, 16, 3), latent_dim=8, channels=(8, 8), hidden=32)
    folder = tmp_path_factory.mktemp("see") / "ae"
    vision.save(base, folder)
    (folder / "config.yaml").write_text(dump_yaml({"env": "NoSuchFamily", "model": "ae"}))
    return folder


def build_iin(base_dir: Path, **params: object) -> IIN:
    params = {"blocks": 2, "hidden": 32, "pairs": 96, **params}
    model = vision.build("iin", image_shape=(16, 16, 3), base=str(base_dir), **params)
    assert isinstance(model, IIN)
    return model


def frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gt = Blocks()
    return gt.sample_observations_from_factors(gt.sample_factors(n, rng), rng)


def train(model: IIN, steps: int, batch: torch.Tensor) -> list[float]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for step in range(steps):
        loss, terms = model.loss(batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(terms["loss"]))
    return losses


@pytest.mark.parametrize("mode", ["supervised", "unsupervised"])
def test_zoo_loss_decreases_base_stays_frozen_and_save_load(
    mode: str, base_dir: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build_iin(base_dir, mode=mode)
    model.set_ground_truth(Blocks())
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    batch = model.to_float(model.as_batch(frames(32)))
    losses = train(model, 40, batch)
    assert np.mean(losses[-5:]) < losses[0] - 0.05, losses
    assert all(torch.equal(v, model.base.state_dict()[k]) for k, v in base_before.items())
    assert not any(p.requires_grad for p in model.base.parameters())
    if mode == "supervised":
        assert model.factor_names == ("colour", "posx", "size")  # the constant factor gets no block
        assert len(model.factor_dims) == 3 and model.feature_dim == sum(model.factor_dims) <= 8
    else:
        assert model.factor_names == () and model.feature_dim == 8
    obs = frames(10, seed=1)
    z = model.encode(obs)
    assert z.shape == (10, model.feature_dim) and z.dtype == torch.float32
    path = vision.save(model, tmp_path / "iin")
    loaded = vision.load(path, device="cpu")
    assert isinstance(loaded, IIN)
    assert torch.equal(loaded.encode(obs), z)
    assert loaded.factor_names == model.factor_names and loaded.factor_dims == model.factor_dims
    assert loaded.decode(z).shape == (10, 3, 16, 16)


def test_encode_is_the_factor_blocks_of_an_invertible_map(base_dir: Path) -> None:
    model = build_iin(base_dir)
    model.set_ground_truth(Blocks())
    model.set_layout(["a", "b"], [2, 3])
    model.train()
    model.flow(torch.randn(64, 8))  # init ActNorm
    randomize(model.flow, std=0.1)
    model.eval()
    x = model.to_float(model.as_batch(frames(6)))
    with torch.no_grad():
        z = model.base.features(x)
        y, _ = model.transform(z)
        assert torch.allclose(model.features(x), y[:, :5])
        assert torch.allclose(model.inverse(y), z, atol=1e-5)
        blocks = model.blocks(y)
    assert [b.shape[1] for b in blocks.values()] == [2, 3, 3] and list(blocks) == ["a", "b", "residual"]


def test_dimension_estimate_scores_shared_factors_above_independent_pairs(base_dir: Path) -> None:
    model = build_iin(base_dir, residual_score=0.0, pairs=600)
    gt = Blocks()
    model.set_ground_truth(gt)
    model.prepare()
    scores = model.block_scores[:3].tolist()
    # control: pairs that share only the constant factor, i.e. independent images
    za, zb, _ = model.make_pairs(200, np.random.default_rng(1), [3])
    control = float(pair_correlations(za, zb).sum())
    assert abs(control) < 0.3
    # even an untrained encoder sees which pixels are on: sharing a factor correlates the codes
    assert all(s > control + 0.3 for s in scores), (scores, control)
    assert sum(model.factor_dims) <= 8


def test_pairs_share_one_factor_and_stay_inside_the_allowed_domains(base_dir: Path) -> None:
    model = build_iin(base_dir)
    allowed = np.array([[0, 0], [0, 1], [1, 0], [2, 3]])  # (colour, posx) combos of the "source domains"
    model.set_ground_truth(Blocks(), allowed, [0, 1])
    rng = np.random.default_rng(0)
    for col in range(3):
        fa, fb = model.sample_pair_factors(400, col, rng)
        assert np.array_equal(fa[:, col], fb[:, col])
        for rows in (fa, fb):
            assert {tuple(r) for r in rows[:, :2]} <= {tuple(r) for r in allowed}
        others = [c for c in range(3) if c != col]
        assert all((fa[:, c] != fb[:, c]).mean() > 0.2 for c in others)  # the rest is drawn independently
    # the constant factor never varies, so it gets no block
    assert model._factor_groups(Blocks()) == [[0], [1], [2]]
    # factors that always change together in the allowed domains (wall and floor) share one block
    model.set_ground_truth(Blocks(), np.array([[0, 1], [1, 3], [2, 0]]), [0, 1])
    assert model._factor_groups(Blocks()) == [[0, 1], [2]]
    model.prepare()
    assert model.factor_names == ("colour+posx", "size")


def test_bad_configs_are_clear_errors(base_dir: Path) -> None:
    with pytest.raises(ConfigError, match="needs `base`"):
        vision.build("iin", image_shape=(16, 16, 3))
    with pytest.raises(ConfigError, match="sigma_ab"):
        build_iin(base_dir, sigma_ab=1.0)
    with pytest.raises(ConfigError, match="image_shape"):
        vision.build("iin", image_shape=(32, 32, 3), base=str(base_dir))
    model = build_iin(base_dir, factors=("colour", "hue"))
    model.set_ground_truth(Blocks())
    with pytest.raises(ConfigError, match="hue"):
        model.prepare()
    # without an attached ground truth the pairs come from the base see folder's env family
    with pytest.raises(ConfigError, match="NoSuchFamily"):
        build_iin(base_dir).prepare()


def test_registered_in_the_zoo() -> None:
    assert "iin" in vision.MODELS.names()
    assert iin_module.IIN is vision.MODELS.get("iin")
