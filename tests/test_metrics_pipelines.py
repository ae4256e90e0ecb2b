"""`darla evaluate` and `darla validate` end to end on tiny models (seconds, not hours)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from darla.cli import main
from darla.envs.sprites import Sprites
from darla.vision import build, save
from darla.vision.metrics import adapt_observations
from darla.vision.trainer import TrainConfig, Trainer

TINY = {"latent_dim": 4, "channels": [8, 8, 8, 8], "hidden": 32}


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32x32x3 VAE trained a few steps on sprites, saved like a see folder's model.pt."""
    frames = adapt_observations(Sprites().sample(256, np.random.default_rng(0))[1], (32, 32, 3))
    model = build("vae", image_shape=(32, 32, 3), **TINY)
    Trainer(model, frames, TrainConfig(steps=4, batch_size=16), seed=0, threads=1).fit()
    folder = tmp_path_factory.mktemp("see") / "vae"
    save(model, folder)
    return folder


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_evaluate_scores_a_saved_model(smoke_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evaluate", "--see", str(smoke_model), "--dataset", "sprites", "--metrics", "mig", "factor_vae"]
    assert main([*argv, "--point-scale", "0.02", "--json", "--threads", "1"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["model"] == "vae" and result["dataset"] == "sprites"
    scores = result["scores"]
    assert {"mig", "factor_vae", "mig.posX"} <= set(scores)
    assert all(0.0 <= v <= 1.0 for k, v in scores.items() if k != "factor_vae.active_dims")
    # deterministic for a seed, and the model.pt path works like its folder
    assert main([*argv, "--point-scale", "0.02", "--json", "--see", str(smoke_model / "model.pt")]) == 0
    assert last_json(capsys.readouterr().out)["scores"] == scores
    # the text rendering names the headline numbers
    assert main([*argv, "--point-scale", "0.02"]) == 0
    assert "mig" in capsys.readouterr().out


def test_evaluate_bad_inputs(smoke_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--see", str(smoke_model), "--dataset", "sprite"]) == 2
    assert "did you mean 'sprites'" in capsys.readouterr().err
    assert main(["evaluate", "--see", str(smoke_model), "--dataset", "sprites", "--metrics", "mgi"]) == 2
    assert "unknown metric 'mgi'" in capsys.readouterr().err
    assert main(["evaluate", "--see", str(smoke_model)]) == 2  # no config.yaml: cannot guess the env
    assert "pass --dataset" in capsys.readouterr().err
    assert main(["evaluate", "--see", str(smoke_model.parent / "missing"), "--dataset", "sprites"]) == 2
    assert "not found" in capsys.readouterr().err


def test_validate_smoke_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "validate",
        "--out",
        str(tmp_path),
        "--models",
        "vae",
        "beta_tcvae",
        "--params",
        f"vae={json.dumps(TINY)}",
        f"beta_tcvae={json.dumps(TINY)}",
        "--frames",
        "512",
        "--train.steps",
        "3",
        "--train.batch-size",
        "16",
        "--point-scale",
        "0.01",
        "--threads",
        "1",
        "--json",
    ]
    assert main(argv) == 0
    result = last_json(capsys.readouterr().out)
    root = tmp_path / "validate"
    for name in ("results.md", "results.csv", "results.json", "traversals.png", "mi.png"):
        assert (root / name).is_file(), name
    for model in ("vae", "beta_tcvae"):
        assert (root / model / "s0" / "DONE.json").is_file() and (root / model / "s0" / "model.pt").is_file()
    # the MI table: every latent (by KL) x every sprites factor, on MIG's samples (same MIG back)
    mi = json.loads((root / "vae" / "s0" / "mi.json").read_text())
    assert mi["factors"] == ["shape", "scale", "orientation", "posX", "posY"]
    assert sorted(mi["latents"]) == list(range(10))  # validate's latent_dim, over the params'
    assert mi["latent_score"] == sorted(mi["latent_score"], reverse=True)
    table = np.array(mi["matrix"])
    assert table.shape == (10, 5) and ((table >= 0) & (table <= 1)).all()
    top = np.sort(table, axis=0)[::-1]
    scores = json.loads((root / "vae" / "s0" / "scores.json").read_text())["scores"]
    assert np.nanmean(top[0] - top[1]) == pytest.approx(scores["mig"], abs=1e-3)
    assert top[0][3] == pytest.approx(scores["mig.top1.posX"], abs=1e-3)
    assert [row["model"] for row in result["table"]] == ["vae", "beta_tcvae"]
    assert result["table"][1]["mig (published)"] == "~0.45"
    assert set(result["ordering"]) == {"beta_tcvae_above_vae_on_mig"}
    assert "| vae |" in (root / "results.md").read_text()
    # the trained model is scored by `darla evaluate` with the dataset read from its folder
    evaluate = ["evaluate", "--see", str(root / "vae" / "s0"), "--metrics", "mig", "--point-scale", "0.01"]
    assert main([*evaluate, "--json"]) == 0
    assert last_json(capsys.readouterr().out)["dataset"] == "sprites"
    # a second run reuses the finished models
    before = (root / "vae" / "s0" / "DONE.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert last_json(capsys.readouterr().out)["table"] == result["table"]
    assert (root / "vae" / "s0" / "DONE.json").stat().st_mtime_ns == before


def test_a_validated_model_depends_on_the_seed_alone(tmp_path: Path) -> None:
    """Same weights whether the model is trained alone or after another one (the first model used
    to start from the process's random torch seed, the later ones from what ran before them)."""
    import torch

    from darla.vision import load

    def train(out: Path, models: list[str]) -> dict[str, torch.Tensor]:
        argv = ["validate", "--out", str(out), "--models", *models, "--params"]
        argv += [f"{m}={json.dumps(TINY)}" for m in models]
        argv += ["--frames", "256", "--train.steps", "2", "--train.batch-size", "8", "--metrics", "mig"]
        assert main([*argv, "--point-scale", "0.01", "--threads", "1"]) == 0
        return load(out / "validate" / "vae" / "s0").state_dict()

    alone, second = train(tmp_path / "a", ["vae"]), train(tmp_path / "b", ["beta_tcvae", "vae"])
    assert alone.keys() == second.keys()
    assert all(torch.equal(alone[k], second[k]) for k in alone)


def test_validate_over_seeds_reports_means_and_reuses_finished_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--seeds 0 1`: a second seed adds folders without retraining the first; the table holds
    the mean over seeds, the ordering compares means and gives the gap's CI."""
    import torch

    from darla.vision import load

    argv = ["validate", "--out", str(tmp_path), "--models", "vae", "beta_tcvae", "--params"]
    argv += [f"{m}={json.dumps(TINY)}" for m in ("vae", "beta_tcvae")]
    argv += ["--frames", "256", "--train.steps", "2", "--train.batch-size", "8", "--metrics", "mig"]
    argv += ["--point-scale", "0.01", "--threads", "1", "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    root = tmp_path / "validate"
    first = (root / "vae" / "s0" / "DONE.json").stat().st_mtime_ns
    assert main([*argv, "--seeds", "0", "1", "--seed-models", "vae"]) == 0
    result = last_json(capsys.readouterr().out)
    assert (root / "vae" / "s0" / "DONE.json").stat().st_mtime_ns == first  # reused, not retrained
    assert (root / "vae" / "s1" / "DONE.json").is_file()
    assert not (root / "beta_tcvae" / "s1").exists()  # not in seed_models: first seed only
    a, b = load(root / "vae" / "s0").state_dict(), load(root / "vae" / "s1").state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)  # each seed its own initialisation
    per_seed = [
        json.loads((root / "vae" / f"s{s}" / "scores.json").read_text())["scores"]["mig"] for s in (0, 1)
    ]
    vae_row, tc_row = result["table"]
    assert vae_row["seeds"] == 2 and tc_row["seeds"] == 1
    assert vae_row["mig"] == round(float(np.mean(per_seed)), 3)
    assert vae_row["mig per seed"] == " ".join(f"{v:.3f}" for v in per_seed)
    assert "mig 95% CI" in vae_row and tc_row["mig 95% CI"] == "-"  # one seed has no interval
    gap = result["ordering_gaps"]["beta_tcvae_above_vae_on_mig"]
    assert gap["low"] is None  # beta_tcvae has one seed: the gap's interval is undefined
    assert "Published ordering (means over seeds)" in (root / "results.md").read_text()
    # bad seed settings name the bad value
    assert main([*argv, "--seeds", "0", "0"]) == 2
    assert "seeds must be distinct" in capsys.readouterr().err
    assert main([*argv, "--seed-models", "factor_vea"]) == 2
    assert "did you mean 'factor_vae'" in capsys.readouterr().err


def test_validate_scores_along_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["validate", "--out", str(tmp_path), "--models", "vae", "--params", f"vae={json.dumps(TINY)}"]
    argv += [
        "--frames",
        "256",
        "--train.steps",
        "4",
        "--train.batch-size",
        "8",
        "--train.checkpoint-every",
        "2",
    ]
    argv += ["--score-every", "2", "--metrics", "mig", "--point-scale", "0.01", "--threads", "1", "--json"]
    assert main(argv) == 0
    result = last_json(capsys.readouterr().out)
    root = tmp_path / "validate"
    rows = json.loads((root / "results.json").read_text())["rows"]
    curve = rows[0]["curve"]
    assert [p["step"] for p in curve] == [2, 4]
    assert curve[-1]["mig"] == rows[0]["scores"]["mig"]  # the last point is the final score
    assert (root / "curves.png").is_file()
    assert len(result["table"][0]["mig along training"].split()) == 2
    # a step budget the checkpoints cannot reach is refused up front
    assert main([*argv[:-3], "--score-every", "3"]) == 2
    assert "multiple of train.checkpoint_every (2)" in capsys.readouterr().err


def test_validate_rejects_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--out", str(tmp_path), "--models", "vea"]) == 2
    assert "did you mean 'vae'" in capsys.readouterr().err
    assert main(["validate", "--out", str(tmp_path), "--metrics", "migg"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert (
        main(["validate", "--out", str(tmp_path), "--models", "vae", "--params", "dc_ing={env: sprites}"])
        == 2
    )
    assert "did you mean 'dc_ign'" in capsys.readouterr().err


def test_validate_a_subset_of_the_preset_models() -> None:
    """`darla validate --preset quick --models vae`: the preset's params for other models are unused."""
    from darla.cli import load_command, parse_config

    cfg, _ = parse_config(load_command(("validate",)), ["--preset", "quick", "--models", "vae", "beta_vae"])
    assert cfg.models == ("vae", "beta_vae") and "iin" in cfg.params


def test_score_see_dir_reads_the_env_and_skips_families_without_ground_truth(
    smoke_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import darla.envs
    from darla.pipelines.analysis import evaluate as ev

    (smoke_model / "config.yaml").write_text("env: sprites\nmodel: vae\n")
    try:
        scores = ev.score_see_dir(smoke_model, metrics=["mig"], point_scale=0.02)
        assert set(scores) >= {"mig", "mig.shape"} and 0.0 <= scores["mig"] <= 1.0

        class NoTruth:
            def ground_truth(self, size: int = 64) -> None:
                raise NotImplementedError("no factors yet")

        monkeypatch.setattr(darla.envs, "get_family", lambda name: NoTruth())
        (smoke_model / "config.yaml").write_text("env: Plain\nmodel: vae\n")
        assert ev.score_see_dir(smoke_model, metrics=["mig"]) == {}
        with pytest.raises(ev.NoGroundTruthError, match="'Plain' has no ground-truth factors"):
            ev.make_dataset("Plain")
    finally:
        (smoke_model / "config.yaml").unlink()
