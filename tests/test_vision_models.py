"""The vision zoo: estimators against known answers, training mechanics, save/load, clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import darla.vision as vision
from darla.errors import ArtifactError, ConfigError, TrainingError, UnknownNameError
from darla.vision.base import apply_step, gaussian_kl, gaussian_log_density
from darla.vision.models.beta_tcvae import log_weight_matrix, tc_terms
from darla.vision.models.dae import DAEConfig, occlusion_mask
from darla.vision.trainer import TrainConfig, Trainer

SHAPE = (32, 32, 3)
# the methods of issue 4 (others that register in MODELS test themselves in their own files)
ZOO = ["ae", "vae", "beta_vae", "beta_vae_capacity", "beta_tcvae", "factor_vae", "dae", "beta_vae_dae"]
TINY = {"latent_dim": 6, "channels": (8, 8, 16, 16), "hidden": 64}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Other jobs share the 2 cores; one torch thread avoids oversubscription stalls in tiny tests."""
    torch.set_num_threads(1)


def tiny(name: str, **params: object) -> vision.VisionModel:
    torch.manual_seed(0)
    extra = {"disc_hidden": 32, "disc_layers": 2} if name == "factor_vae" else {}
    return vision.build(name, image_shape=SHAPE, **{**TINY, **extra, **params})


def blobs(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Structured uint8 frames: a coloured background and a coloured rectangle."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, 3)
        y, x = rng.integers(0, size - 10, 2)
        h, w = rng.integers(4, 10, 2)
        out[i, y : y + h, x : x + w] = rng.integers(0, 256, 3)
    return out


def as_float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


# ----------------------------------------------------------------------------- estimators
def test_closed_form_kl_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g)
    logvar = torch.randn(4, 3, generator=g) * 0.5
    z = mu + torch.randn(200_000, 4, 3, generator=g) * torch.exp(0.5 * logvar)
    zeros = torch.zeros_like(mu)
    mc = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, zeros, zeros)).mean(0)
    assert torch.allclose(gaussian_kl(mu, logvar), mc, atol=0.02)


def test_stratified_weights_rows_sum_to_one() -> None:
    for m, n in [(4, 4), (8, 1000), (64, 50_000)]:
        w = log_weight_matrix(m, n, "mss").exp()
        assert torch.allclose(w.sum(1), torch.ones(m), atol=1e-5)
        assert torch.allclose(w.diagonal(), torch.full((m,), 1 / n))
    assert torch.allclose(log_weight_matrix(8, 100, "mws").exp().sum(1), torch.ones(8))


def _gaussian_tc(cov: torch.Tensor) -> float:
    return 0.5 * float(torch.log(cov.diagonal()).sum() - torch.logdet(cov))


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_tc_estimator_recovers_known_total_correlation(sampling: str) -> None:
    """q(z|x_n) = N(mu_n, s^2 I) with mu_n ~ N(0, S): q(z) = N(0, S + s^2 I), TC in closed form."""
    g = torch.Generator().manual_seed(0)
    d, m, s2 = 3, 3000, 0.25
    a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.4, 0.8]])
    cov = a @ a.T
    true_tc = _gaussian_tc(cov + s2 * torch.eye(d))
    mu = torch.randn(m, d, generator=g) @ a.T
    logvar = torch.full((m, d), math.log(s2))
    z = mu + torch.randn(m, d, generator=g) * math.sqrt(s2)
    terms = tc_terms(z.double(), mu.double(), logvar.double(), dataset_size=10**6, sampling=sampling)
    assert true_tc > 0.3
    assert abs(float(terms["tc"]) - true_tc) < 0.1 * true_tc + 0.03
    # the three terms telescope to the Monte Carlo KL(q(z|x) || p(z)) on the batch
    zeros = torch.zeros_like(z)
    mc_kl = (gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, zeros, zeros)).sum(1).mean()
    total = terms["mi"] + terms["tc"] + terms["dwkl"]
    assert abs(float(total) - float(mc_kl)) < 1e-6


def test_tc_is_near_zero_for_independent_latents() -> None:
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(2000, 4, generator=g)
    logvar = torch.full_like(mu, math.log(0.3))
    z = mu + torch.randn(2000, 4, generator=g) * math.sqrt(0.3)
    assert abs(float(tc_terms(z, mu, logvar, 10**6, "mss")["tc"])) < 0.05


# ----------------------------------------------------------------------------- mechanics
@pytest.mark.parametrize(("disc_lr", "expected"), [(None, 5e-4), (1e-4, 1e-4)])
def test_factor_vae_discriminator_learns_at_the_vae_rate_unless_told(
    disc_lr: float | None, expected: float
) -> None:
    """disentanglement_lib trains both at 1e-4: a raised VAE rate must not leave the TC estimate behind."""
    from darla.vision.trainer import TrainConfig, Trainer

    model = tiny("factor_vae", disc_lr=disc_lr)
    trainer = Trainer(model, blobs(16), TrainConfig(steps=1, batch_size=8, lr=5e-4), threads=1)
    assert trainer.optimizers["main"].param_groups[0]["lr"] == 5e-4
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == expected


def test_factor_vae_discriminator_step_leaves_encoder_unchanged() -> None:
    model = tiny("factor_vae")
    opts = {
        k: torch.optim.Adam(s.params, lr=s.lr or 1e-3, betas=s.betas) for k, s in model.optimizers().items()
    }
    x = as_float(blobs(32))
    mu, logvar = model.posterior(x[:16])
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    enc_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    disc_before = [p.clone() for p in model.discriminator.parameters()]
    d_loss, _ = model.discriminator_loss(z, z.detach().flip(0))
    apply_step(opts["discriminator"], d_loss, {"d_loss": d_loss}, 0)
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in enc_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, model.discriminator.parameters()))
    # the optimisers are disjoint: the main one never holds discriminator parameters
    disc_ids = {id(p) for p in model.discriminator.parameters()}
    assert not disc_ids & {id(p) for g in opts["main"].param_groups for p in g["params"]}


def test_dae_inside_beta_vae_dae_is_unchanged_by_training() -> None:
    model = tiny("beta_vae_dae", dae_layer="deconv2")
    dae = tiny("dae")
    model.attach_dae(dae)
    assert model.config.dae["latent_dim"] == TINY["latent_dim"]
    before = {k: v.clone() for k, v in model.dae.state_dict().items()}
    enc_before = model.encoder.fc.weight.clone()
    trainer = Trainer(model, blobs(64), TrainConfig(steps=8, batch_size=8, lr=1e-3), seed=0, threads=1)
    trainer.fit()
    assert all(torch.equal(v, model.dae.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(enc_before, model.encoder.fc.weight)
    assert not any(p.requires_grad for p in model.dae.parameters())
    model.train()
    assert not model.dae.training


def test_capacity_follows_its_schedule() -> None:
    model = tiny("beta_vae_capacity", c_max=20.0, c_steps=100)
    assert [model.capacity(s) for s in (0, 25, 50, 100, 1000)] == [0.0, 5.0, 10.0, 20.0, 20.0]
    x = as_float(blobs(8))
    _, terms = model.loss(x, step=50)
    assert float(terms["capacity"]) == 10.0
    torch.manual_seed(0)
    loss_a, t = model.loss(x, step=0)
    torch.manual_seed(0)
    loss_b, _ = model.loss(x, step=100)
    kl = float(t["kl"])
    expected = 1000.0 * (abs(kl - 20.0) - abs(kl - 0.0))
    assert float((loss_b - loss_a).detach()) == pytest.approx(expected, rel=1e-4, abs=1e-2)


def test_occlusion_mask_draws_rectangles() -> None:
    cfg = DAEConfig(mask_rects=2, mask_prob=1.0, mask_min=0.25, mask_max=0.25)
    mask = occlusion_mask(500, 32, 32, cfg, torch.device("cpu"))
    frac = mask.float().mean((1, 2, 3))
    assert float(frac.min()) >= 8 * 8 / 1024 - 1e-6  # at least one 8x8 rectangle
    assert float(frac.max()) <= 2 * 8 * 8 / 1024 + 1e-6
    model = tiny("dae")
    x = torch.rand(4, 3, 32, 32)
    assert not torch.equal(model.corrupt(x), x)


# tiny-budget settings: capacity reaches its target within the test's steps
LOWER_LOSS_PARAMS: dict[str, dict[str, object]] = {
    "beta_vae_capacity": {"gamma": 4.0, "c_max": 5.0, "c_steps": 50}
}


@pytest.mark.parametrize("name", ZOO)
def test_every_model_lowers_its_loss(name: str) -> None:
    # squared error: its floor is 0, so "lower" is a clear margin (Bernoulli's floor is the pixel entropy)
    model = tiny(name, recon="gaussian", **LOWER_LOSS_PARAMS.get(name, {}))
    if name == "beta_vae_dae":
        model.attach_dae(tiny("dae"))
    opts = {k: torch.optim.Adam(s.params, lr=3e-3, betas=s.betas) for k, s in model.optimizers().items()}
    x = as_float(blobs(16 * model.batches_per_step))
    steps = 200

    def measured() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(model.loss(x[:16], step=steps)[0])

    before = measured()
    model.train()
    for step in range(steps):
        model.train_step(x, step, opts)
    after = measured()
    assert after < 0.85 * before, (before, after)


def test_features_are_differentiable_and_match_encode() -> None:
    model = tiny("beta_vae")
    frames = blobs(5)
    x = as_float(frames).requires_grad_(True)
    f = model.features(x)
    f.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert torch.allclose(model.encode(frames), f.detach(), atol=1e-5)


# ----------------------------------------------------------------------------- encode API
def test_encode_shapes_and_chunking() -> None:
    model = tiny("vae")
    frames = blobs(10)
    z = model.encode(frames)
    assert z.shape == (10, TINY["latent_dim"]) and z.dtype == torch.float32
    assert model.encode(frames[0]).shape == (1, TINY["latent_dim"])
    assert torch.allclose(model.encode(torch.from_numpy(frames)), z)
    assert torch.allclose(model.encode(frames, batch_size=3), z, atol=1e-6)
    assert torch.allclose(model.encode(as_float(frames)), z, atol=1e-6)
    # deterministic: the posterior mean, not a sample
    assert torch.equal(model.encode(frames), model.encode(frames))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 3, 32, 32), np.uint8), np.zeros((32, 32), np.uint8)],
)
def test_encode_rejects_wrong_shapes(bad: np.ndarray) -> None:
    model = tiny("beta_vae")
    with pytest.raises(ConfigError, match=r"expects .*\(N, 32, 32, 3\).*got"):
        model.encode(bad)


def test_build_errors_name_the_bad_value() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'vae'"):
        vision.build("vea")
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        vision.build("beta_vae", betta=2.0)
    with pytest.raises(ConfigError, match="multiples of 16"):
        vision.build("vae", image_shape=(40, 40, 3))
    with pytest.raises(ConfigError, match="dae_layer"):
        vision.build("beta_vae_dae", image_shape=SHAPE, dae_layer="conv9")


# ----------------------------------------------------------------------------- save / load / train
def test_save_load_gives_identical_encode(tmp_path: Path) -> None:
    for name in ("beta_vae_dae", "factor_vae", "ae"):
        model = tiny(name)
        vision.save(model, tmp_path / name, extra={"note": "x"})
        loaded = vision.load(tmp_path / name)
        frames = blobs(7)
        assert type(loaded) is type(model)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert torch.equal(model.encode(frames), loaded.encode(frames))
        payload = torch.load(tmp_path / name / "model.pt", weights_only=True)
        assert payload["extra"] == {"note": "x"}


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        vision.load(tmp_path / "nothing")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage, not a checkpoint")
    with pytest.raises(ArtifactError, match="not a darla checkpoint"):
        vision.load(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ArtifactError, match="not a darla vision checkpoint"):
        vision.load(foreign)
    model = tiny("beta_vae")
    path = vision.save(model, tmp_path / "renamed.pt")
    payload = torch.load(path, weights_only=True)
    payload["model"] = "beta_vea"
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match="did you mean 'beta_vae'"):
        vision.load(path)
    payload["model"] = "vae"  # beta_vae's config has 'beta', which vae's lacks
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match="invalid model config"):
        vision.load(path)


def _train(name: str, steps: int, ckpt: Path) -> vision.VisionModel:
    model = tiny(name)
    cfg = TrainConfig(steps=steps, batch_size=8, lr=1e-3, checkpoint_every=4, log_every=2)
    Trainer(model, blobs(64), cfg, seed=5, checkpoint=ckpt, resume_key="same", threads=1).fit()
    return model


@pytest.mark.parametrize("name", ["beta_vae", "factor_vae", "dae"])
def test_resumed_training_equals_uninterrupted(tmp_path: Path, name: str) -> None:
    straight = _train(name, 12, tmp_path / "a.pt")
    _train(name, 6, tmp_path / "b.pt")  # "killed" after 6 steps (last checkpoint = step 6)
    resumed = _train(name, 12, tmp_path / "b.pt")
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert state["train_state"]["step"] == 12
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_hook_runs_without_changing_training(tmp_path: Path) -> None:
    """Scoring along training (validate's score_every) must not change what is trained."""
    straight = _train("beta_vae", 12, tmp_path / "a.pt")
    seen: list[int] = []
    model = tiny("beta_vae")

    def hook(step: int) -> None:  # uses the torch RNG and eval mode, as a metric would
        seen.append(step)
        torch.rand(100)
        model.eval()

    cfg = TrainConfig(steps=12, batch_size=8, lr=1e-3, checkpoint_every=4, log_every=2)
    Trainer(model, blobs(64), cfg, seed=5, checkpoint=tmp_path / "h.pt", on_checkpoint=hook, threads=1).fit()
    assert seen == [4, 8]  # periodic checkpoints only; the final one is the caller's
    for (k, a), b in zip(straight.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_checkpoint_from_another_config_is_not_resumed(tmp_path: Path) -> None:
    _train("beta_vae", 4, tmp_path / "c.pt")
    model = tiny("beta_vae")
    cfg = TrainConfig(steps=2, batch_size=8)
    result = Trainer(
        model, blobs(64), cfg, seed=5, checkpoint=tmp_path / "c.pt", resume_key="other", threads=1
    ).fit()
    assert result.resumed_from == 0 and result.steps == 2


def test_non_finite_loss_names_step_and_term() -> None:
    model = tiny("beta_vae")
    with torch.no_grad():
        model.decoder.fc.weight.fill_(float("nan"))
    trainer = Trainer(model, blobs(32), TrainConfig(steps=3, batch_size=4), seed=0, threads=1)
    with pytest.raises(TrainingError, match=r"step 0: recon=nan"):
        trainer.fit()


def test_trainer_rejects_frames_of_the_wrong_shape() -> None:
    with pytest.raises(ConfigError, match=r"built for \(32, 32, 3\)"):
        Trainer(tiny("vae"), np.zeros((10, 64, 64, 3), np.uint8), TrainConfig(), seed=0, threads=1)


def test_registry_holds_the_contracted_zoo() -> None:
    assert set(ZOO) <= set(vision.MODELS.names())
    for name in ZOO:
        model = vision.MODELS.get(name)
        assert model.name == name and model.config_cls.__doc__


def test_beta_vae_dae_measures_reconstruction_in_dae_space() -> None:
    """J is the DAE's layer applied to both images; pixel_weight adds a plain pixel term."""
    model = tiny("beta_vae_dae", dae_layer="deconv1")
    x = as_float(blobs(6))
    logits = torch.randn(6, 3, 32, 32)
    expected = model.dae.layer_output(torch.sigmoid(logits), "deconv1") - model.dae.layer_output(x, "deconv1")
    assert float(model.reconstruction(logits, x)) == pytest.approx(float(expected.pow(2).sum() / 6), rel=1e-5)
    model.config.pixel_weight = 0.5
    pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 6
    assert float(model.reconstruction(logits, x)) == pytest.approx(
        float(expected.pow(2).sum() / 6 + 0.5 * pixel), rel=1e-5
    )


def test_mix_pastes_one_rectangle_from_another_frame_of_the_batch() -> None:
    from darla.vision.trainer import mix_frames

    frames = torch.from_numpy(blobs(16))
    assert torch.equal(mix_frames(frames, 0.0, torch.Generator().manual_seed(0)), frames)
    mixed = mix_frames(frames, 1.0, torch.Generator().manual_seed(0))
    again = mix_frames(frames, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again)  # seeded
    changed = 0
    for i in range(len(frames)):
        diff = (mixed[i] != frames[i]).any(-1).numpy()
        if not diff.any():
            continue  # the donor was itself, or looked the same there
        changed += 1
        rows, cols = np.nonzero(diff)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert (bottom - top) <= 0.75 * 32 + 1 and (right - left) <= 0.75 * 32 + 1
        # every changed pixel comes from one other frame, at the same place
        donors = [j for j in range(len(frames)) if j != i and torch.equal(mixed[i][diff], frames[j][diff])]
        assert donors, i
    assert changed >= len(frames) // 2
    # at its default the option leaves finished stages' hashes alone; it must be a probability
    from darla.config import hash_dict

    assert "mix" not in hash_dict(TrainConfig()) and hash_dict(TrainConfig(mix=0.5))["mix"] == 0.5
    with pytest.raises(ConfigError, match=r"train.mix must be in \[0, 1\], got 1.5"):
        TrainConfig(mix=1.5).validate()


def test_training_with_mix_runs_and_differs_from_plain(tmp_path: Path) -> None:
    models = []
    for mix in (0.0, 0.5):
        model = tiny("beta_vae")
        cfg = TrainConfig(steps=4, batch_size=8, lr=1e-3, mix=mix)
        Trainer(model, blobs(64), cfg, seed=5, threads=1).fit()
        models.append(model)
    plain, mixed = (m.state_dict() for m in models)
    assert any(not torch.equal(plain[k], mixed[k]) for k in plain)
