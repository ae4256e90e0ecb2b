"""SCAN: recombination operators on hand-built Gaussians, symbol parsing, grounding on a frozen
beta-VAE (img2sym beats chance on held-out combinations), save/load, and the describe/imagine CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import darla.vision as vision
from darla.cli import main
from darla.errors import ConfigError
from darla.vision.models.scan import (
    SCAN,
    build_vocabulary,
    color_name,
    recombine,
    specified,
    value_label,
)
from darla.vision.trainer import TrainConfig, Trainer

SHAPE = (32, 32, 3)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class Boxes:
    """A tiny ground truth: a coloured square on a grey background (colour, x, y, size)."""

    factor_names = ("color", "x", "y", "size")
    factor_sizes = (4, 3, 3, 2)
    image_shape = SHAPE
    rgb = ((0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.3, 0.95), (0.95, 0.85, 0.1))

    def values(self, name: str) -> tuple[object, ...]:
        return {"color": self.rgb, "x": (0, 1, 2), "y": (0, 1, 2), "size": ("small", "large")}[name]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, k, n) for k in self.factor_sizes], 1)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.full((len(factors), 32, 32, 3), 90, np.uint8)
        for i, (c, x, y, s) in enumerate(factors):
            side = 9 + 7 * int(s)
            out[i, 2 + 6 * y : 2 + 6 * y + side, 2 + 6 * x : 2 + 6 * x + side] = np.array(self.rgb[c]) * 255
        return out

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        f = self.sample_factors(n, rng)
        return f, self.sample_observations_from_factors(f, rng)


def g(mu: list[float], var: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(mu), torch.log(torch.tensor(var))


# ----------------------------------------------------------------------------- operators
def test_and_keeps_what_either_concept_specifies() -> None:
    a = g([2.0, 0.0, 0.0, -1.5], [0.01, 1.0, 1.0, 0.04])  # specifies units 0 and 3
    b = g([0.0, -1.0, 0.0, -1.0], [1.0, 0.02, 1.0, 0.04])  # specifies units 1 and 3
    mu, logvar = recombine("AND", a, b)
    var = logvar.exp()
    assert torch.allclose(mu[:3], torch.tensor([2.0, -1.0, 0.0])) and torch.allclose(
        var[:3], torch.tensor([0.01, 0.02, 1.0])
    )
    # both specify unit 3: the product of N(-1.5, 0.04) and N(-1, 0.04) = N(-1.25, 0.02)
    assert math.isclose(float(mu[3]), -1.25, abs_tol=1e-6) and math.isclose(float(var[3]), 0.02, rel_tol=1e-5)


def test_in_common_keeps_only_shared_agreeing_units() -> None:
    a = g([2.0, 1.0, 0.5, 0.0], [0.01, 0.01, 0.01, 1.0])
    b = g([2.0, -1.0, 0.0, 0.0], [0.01, 0.01, 1.0, 1.0])
    mu, logvar = recombine("in common", a, b)
    # unit 0: both alike -> kept; unit 1: both specify, disagree -> prior; 2: only a; 3: neither
    assert torch.allclose(mu, torch.tensor([2.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(logvar.exp(), torch.tensor([0.01, 1.0, 1.0, 1.0]), atol=1e-6)


def test_ignore_resets_the_units_of_the_ignored_concept() -> None:
    a = g([2.0, 1.0, 0.7], [0.01, 0.01, 0.5])
    b = g([0.0, -1.0, 0.0], [1.0, 0.01, 1.0])
    mu, logvar = recombine("IGNORE", a, b)
    assert torch.allclose(mu, torch.tensor([2.0, 0.0, 0.7]))
    assert torch.allclose(logvar.exp(), torch.tensor([0.01, 1.0, 0.5]), atol=1e-6)
    assert specified(a).tolist() == [True, True, False]  # KL(N(0.7, 0.5) || N(0, 1)) < 0.5 nats
    with pytest.raises(ConfigError, match="did you mean 'IGNORE'"):
        recombine("IGNOR", a, b)


def test_value_names_are_readable() -> None:
    assert color_name((0.85, 0.1, 0.1)) == "red" and color_name((0.1, 0.35, 0.95)) == "blue"
    assert (
        value_label(("cube", "cube")) == "cube"
        and value_label(("ceiling_tiles", False)) == "ceiling_tiles_off"
    )
    vocab = build_vocabulary(Boxes(), ("color", "size"))
    assert vocab == ("color=red", "color=green", "color=blue", "color=yellow", "size=small", "size=large")
    with pytest.raises(ConfigError, match="did you mean 'color'"):
        build_vocabulary(Boxes(), ("colr",))


# ----------------------------------------------------------------------------- grounding
@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small beta-VAE trained on Boxes frames, saved like a see folder."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = vision.build(
        "beta_vae", image_shape=SHAPE, latent_dim=8, channels=(16, 16, 32, 32), hidden=96, beta=0.25
    )
    frames = Boxes().sample(1500, np.random.default_rng(0))[1]
    Trainer(model, frames, TrainConfig(steps=500, batch_size=32, lr=2e-3), seed=0, threads=1).fit()
    folder = tmp_path_factory.mktemp("see") / "beta_vae"
    vision.save(model, folder)
    return folder


@pytest.fixture(scope="module")
def trained(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SCAN, Path]:
    torch.manual_seed(0)
    vocab = build_vocabulary(Boxes(), ("color", "x", "size"))
    model = vision.build(
        "scan",
        image_shape=SHAPE,
        base=str(base_dir),
        vocabulary=vocab,
        hidden=64,
        examples=1500,
        heldout=0.25,
    )
    assert isinstance(model, SCAN)
    model.set_ground_truth(Boxes())
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    model.train()
    recon = []
    for _ in range(600):
        y, q = model.training_batch(64, gen)
        loss, terms = model.scan_loss(y, q)
        recon.append(float(terms["sym_recon"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.mean(recon[-50:]) < 0.5 * np.mean(recon[:10])
    assert all(torch.equal(v, model.base.state_dict()[k]) for k, v in base_before.items())  # frozen
    model.eval()
    folder = tmp_path_factory.mktemp("scan") / "scan"
    vision.save(model, folder)
    return model, folder


def test_img2sym_beats_chance_on_heldout_combinations(trained: tuple[SCAN, Path]) -> None:
    model, _ = trained
    held = model.img2sym_accuracy(heldout=True)
    assert held["examples"] > 50
    # held-out (colour, size) combinations were never shown with their symbols
    train_combos = {tuple(r) for r in model.data["factors"][~model.data["heldout"]].tolist()}
    assert not train_combos & {tuple(r) for r in model.data["factors"][model.data["heldout"]].tolist()}
    assert held["accuracy"] > held["chance"] + 0.15, held
    assert held["per_factor"]["color"] > 0.6, held
    assert model.img2sym_accuracy(heldout=False)["accuracy"] > 0.75


def test_forward_kl_leaves_unnamed_factors_broad(trained: tuple[SCAN, Path]) -> None:
    """A symbol naming fewer factors specifies fewer latent units (abstraction)."""
    model, _ = trained
    with torch.no_grad():
        one = model.symbol_posterior(model.parse_symbols("color=red"))
        both = model.symbol_posterior(model.parse_symbols("color=red,size=large"))
    prior = (torch.zeros_like(one[0]), torch.zeros_like(one[1]))
    from darla.vision.models.scan import gaussian_kl_between

    assert float(gaussian_kl_between(one, prior).sum()) < float(gaussian_kl_between(both, prior).sum())


def test_parse_symbols_prefixes_and_errors(trained: tuple[SCAN, Path]) -> None:
    model, _ = trained
    y = model.parse_symbols("col=red, large")  # prefix of a factor; a bare value
    assert [model.vocabulary[i] for i in torch.nonzero(y[0]).flatten()] == ["color=red", "size=large"]
    with pytest.raises(
        ConfigError, match=r"unknown symbol 'color=purple'; valid symbols: color=red, color=green"
    ):
        model.parse_symbols("color=purple")


def test_save_load_gives_identical_encode(trained: tuple[SCAN, Path]) -> None:
    model, folder = trained
    loaded = vision.load(folder)
    frames = Boxes().sample(7, np.random.default_rng(3))[1]
    assert isinstance(loaded, SCAN) and loaded.vocabulary == model.vocabulary
    assert torch.equal(model.encode(frames), loaded.encode(frames))
    assert model.encode(frames).shape == (7, len(model.vocabulary))


def test_cli_describe_and_imagine(
    trained: tuple[SCAN, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = trained
    frame = Boxes().sample_observations_from_factors(np.array([[1, 1, 1, 1]]), np.random.default_rng(0))[0]
    Image.fromarray(frame).resize((64, 64)).save(tmp_path / "green.png")  # resized back to 32x32 on read
    assert main(["scan", "describe", str(tmp_path / "green.png"), "--scan", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["best"].startswith("color=green,"), out
    assert next(iter(out["symbols"]["color"])) == "green" and len(out["symbols"]["color"]) == 3
    grid = tmp_path / "grid.png"
    assert (
        main(
            [
                "scan",
                "imagine",
                "color=blue,size=small",
                "--scan",
                str(folder),
                "--out",
                str(grid),
                "--n",
                "8",
            ]
        )
        == 0
    )
    assert Image.open(grid).size == (8 * 34 + 2, 34 + 2)
    assert (
        main(
            [
                "scan",
                "imagine",
                "color=blue AND size=large IGNORE size=large",
                "--scan",
                str(folder),
                "--out",
                str(grid),
            ]
        )
        == 0
    )
    assert main(["scan", "imagine", "wall=brick", "--scan", str(folder), "--out", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "unknown symbol 'wall=brick'; valid symbols: color=red" in err
    assert main(["scan", "describe", str(tmp_path / "nope.png"), "--scan", str(folder)]) == 2
    assert "image not found" in capsys.readouterr().err


@pytest.mark.slow
def test_train_scan_on_seek_avoid(tmp_path: Path) -> None:
    """End to end on a real env family: base beta-VAE on ground-truth frames, then `train_scan`."""
    import darla.envs as envs
    from darla.config import dump_yaml
    from darla.pipelines.scan import ScanTrainConfig, train_scan

    gt = envs.get_family("SeekAvoid").ground_truth(size=32)
    frames = gt.sample(1000, np.random.default_rng(0))[1]
    torch.manual_seed(0)
    base = vision.build("beta_vae", image_shape=SHAPE, latent_dim=10, beta=1.0)
    Trainer(base, frames, TrainConfig(steps=500, batch_size=32, lr=1e-3), seed=0, threads=1).fit()
    see = tmp_path / "see" / "beta_vae"
    vision.save(base, see)
    (see / "config.yaml").write_text(dump_yaml({"env": "SeekAvoid", "model": "beta_vae", "size": 32}))
    (see / "DONE.json").write_text(json.dumps({"config_hash": "x", "finished_at": 0}))
    # every appearance factor: ~1000 combinations, so held-out ones share each value with many seen ones
    cfg = ScanTrainConfig(vision=str(see), steps=1000, params={"examples": 1200}, threads=1)
    folder = train_scan(cfg)
    assert folder == tmp_path / "see" / "scan-beta_vae" and (folder / "DONE.json").is_file()
    assert isinstance(vision.load(folder), SCAN)
    held = json.loads((folder / "scan.json").read_text())["img2sym_heldout"]
    assert held["accuracy"] > held["chance"] + 0.05, held
    stamp = (folder / "scan.json").stat().st_mtime_ns
    assert train_scan(cfg) == folder and (folder / "scan.json").stat().st_mtime_ns == stamp  # done: skipped


def test_scan_train_is_a_see_stage_and_resumes_skips_like_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`darla scan train` trains SCAN through the see stage (one training loop for the zoo): a see
    folder with its DONE marker and checkpoint, skipped when done, scored in scan.json."""
    from conftest import tiny_see

    see = Path(tiny_see(tmp_path, params={"latent_dim": 6, "channels": [8, 8], "hidden": 16}))
    argv = ["scan", "train", "--vision", str(see), "--steps", "4", "--batch-size", "8", "--threads", "1"]
    argv += ["--params", "examples=64", "hidden=16", "--samples", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = tmp_path / "see" / "scan-beta_vae"
    assert result["scan_dir"] == str(folder) and (folder / "DONE.json").is_file()
    payload = torch.load(folder / "model.pt", weights_only=True)
    assert payload["train_state"]["step"] == 4  # the see stage's trainer: resumable checkpoints
    assert isinstance(vision.load(folder), SCAN) and "img2sym_heldout_accuracy" in result
    stamp = (folder / "scan.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (folder / "scan.json").stat().st_mtime_ns == stamp  # done: neither retrained nor rescored
