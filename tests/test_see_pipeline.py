"""The see stage: folder contents, skip/resume, source-only frames, the CLI, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import darla.envs
import darla.vision as vision
from darla.cli import main
from darla.config import build_config
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.orchestrate.lone import run_see_plan
from darla.pipelines.stages.see import SeeConfig, run_see

SIZE = 32
TINY = {"latent_dim": 4, "channels": [8, 8, 16, 16], "hidden": 32}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@dataclass
class FakeFrames:
    path: Path
    frames: np.ndarray


@pytest.fixture
def fake_collect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """Replace frame collection with structured random frames; record every request."""
    calls: list[dict[str, Any]] = []

    def collect(family: str, domains: list[str], n: int, **kw: Any) -> FakeFrames:
        calls.append({"family": family, "domains": list(domains), "n": n, **kw})
        rng = np.random.default_rng(kw["seed"])
        frames = np.empty((n, kw["size"], kw["size"], 3), np.uint8)
        frames[:] = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)
        frames[:, 8:16, 8:16] = rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8)
        return FakeFrames(tmp_path / "frames", frames)

    monkeypatch.setattr(darla.envs, "collect_frames", collect, raising=False)
    return calls


def tiny_cfg(tmp_path: Path, **kw: Any) -> SeeConfig:
    data: dict[str, Any] = {
        "env": "SeekAvoid",
        "model": "beta_vae",
        "out": str(tmp_path / "exp"),
        "size": SIZE,
        "frames": 48,
        "params": dict(TINY),
        "train": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "image_every": 0},
        "model_params": {"dae": dict(TINY)},
        "model_train": {"dae": {"steps": 3, "batch_size": 8, "lr": 1e-3}},
        "threads": 1,
        "workers": 1,
        **kw,
    }
    return build_config(SeeConfig, section="see", overrides=data)


def test_see_writes_the_folder_and_trains_the_dae_first(tmp_path: Path, fake_collect: list) -> None:
    cfg = tiny_cfg(tmp_path, model="beta_vae_dae", params={**TINY, "dae_layer": "deconv2"})
    with pytest.raises(ArtifactError, match=r"built on a denoising autoencoder .*not ready"):
        run_see(cfg)  # the stage alone needs its DAE trained; `darla see` (the plan) trains it first
    folder = Path(run_see_plan(cfg)["see_dir"])
    assert folder == tmp_path / "exp" / "see" / "beta_vae_dae"
    for name in ("model.pt", "config.yaml", "metrics.json", "recon.png", "traversals.png", "DONE.json"):
        assert (folder / name).is_file(), name
    assert any((folder / "tb").iterdir())
    dae_dir = tmp_path / "exp" / "see" / "dae"
    assert (dae_dir / "DONE.json").is_file()
    source = tuple(darla.envs.get_family("SeekAvoid").splits["source"])
    assert all(tuple(c["domains"]) == source for c in fake_collect)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["env"] == "SeekAvoid" and tuple(config["domains"]) == source
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["steps"] == 4 and len(metrics["kl_per_latent"]) == TINY["latent_dim"]
    for key in ("recon_mse", "active_latents", "training_seconds", "images_per_s"):
        assert key in metrics
    payload = torch.load(folder / "model.pt", weights_only=True)
    assert payload["train_state"]["step"] == 4 and "main" in payload["train_state"]["optimizers"]
    model = vision.load(folder)
    dae = vision.load(dae_dir)
    assert all(torch.equal(a, b) for a, b in zip(model.dae.state_dict().values(), dae.state_dict().values()))
    assert dae.config.latent_dim == TINY["latent_dim"]  # the DAE takes model_params.dae, not params
    assert config["upstream"]["dae_from"]["path"] == str(dae_dir)  # recorded for the leak check
    assert model.encode(np.zeros((2, SIZE, SIZE, 3), np.uint8)).shape == (2, TINY["latent_dim"])


def test_see_skips_when_done_and_retrains_on_change(tmp_path: Path, fake_collect: list) -> None:
    cfg = tiny_cfg(tmp_path)
    folder = run_see(cfg)
    stamp = (folder / "model.pt").stat().st_mtime_ns
    assert run_see(tiny_cfg(tmp_path, threads=2)) == folder  # excluded field: still done
    assert (folder / "model.pt").stat().st_mtime_ns == stamp
    run_see(tiny_cfg(tmp_path, params={**TINY, "beta": 2.0}))
    assert (folder / "model.pt").stat().st_mtime_ns != stamp
    assert yaml.safe_load((folder / "config.yaml").read_text())["params"]["beta"] == 2.0
    # `beta=2` from the CLI is the same stage as `beta: 2.0` from a YAML file: no retraining
    stamp = (folder / "model.pt").stat().st_mtime_ns
    run_see(tiny_cfg(tmp_path, params={**TINY, "beta": 2}))
    assert (folder / "model.pt").stat().st_mtime_ns == stamp


def test_see_resumes_an_interrupted_run(tmp_path: Path, fake_collect: list) -> None:
    straight = vision.load(run_see(tiny_cfg(tmp_path / "a", train={"steps": 6, "batch_size": 8})))
    cfg = tiny_cfg(tmp_path / "b", train={"steps": 6, "batch_size": 8, "checkpoint_every": 3})
    folder = cfg.folder
    # simulate a kill after step 3: train a 3-step run, then pretend it belonged to the 6-step config
    short = tiny_cfg(tmp_path / "b", train={"steps": 3, "batch_size": 8, "checkpoint_every": 3})
    run_see(short)
    payload = torch.load(folder / "model.pt", weights_only=True)
    from darla.pipelines.stages.see import resolve, see_stage

    payload["extra"]["resume_key"] = see_stage(resolve(cfg)).hash
    torch.save(payload, folder / "model.pt")
    (folder / "DONE.json").unlink()
    resumed = vision.load(run_see(cfg))
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_see_refuses_target_domains_and_bad_params(tmp_path: Path, fake_collect: list) -> None:
    target = darla.envs.get_family("SeekAvoid").splits["target"][0]
    with pytest.raises(ConfigError, match="source domains only"):
        run_see(tiny_cfg(tmp_path, domains=[target]))
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        tiny_cfg(tmp_path, params={"betta": 1.0})
    with pytest.raises(ConfigError, match="did you mean 'beta_vae'"):
        tiny_cfg(tmp_path, model="beta_vea")
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        tiny_cfg(tmp_path, model_params={"beta_vae_dae": {"betta": 1.0}})
    assert not fake_collect


def test_model_params_apply_to_the_chosen_model_only(tmp_path: Path, fake_collect: list) -> None:
    presets = {"beta_vae": {"beta": 1.5}, "factor_vae": {"gamma": 3.0}}
    folder = run_see(tiny_cfg(tmp_path, model_params=presets))
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert written["params"]["beta"] == 1.5 and written["model_params"] == {}
    assert vision.load(folder).config.beta == 1.5
    folder2 = run_see(tiny_cfg(tmp_path, model_params=presets, params={**TINY, "beta": 3.0}))
    assert vision.load(folder2).config.beta == 3.0


def _cli_args(tmp_path: Path, model: str = "beta_vae") -> list[str]:
    return [
        "see",
        "--env",
        "SeekAvoid",
        "--model",
        model,
        "--out",
        str(tmp_path / "cli"),
        "--size",
        str(SIZE),
        "--frames",
        "40",
        "--params",
        "latent_dim=4",
        "hidden=32",
        "beta=2",
        "--train.steps",
        "3",
        "--train.batch-size",
        "8",
        "--threads",
        "1",
        "--workers",
        "1",
    ]


def test_see_cli_json(tmp_path: Path, fake_collect: list, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*_cli_args(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["see_dir"] == str(tmp_path / "cli" / "see" / "beta_vae")
    assert result["steps"] == 3 and "recon_mse" in result
    assert main([*_cli_args(tmp_path, "vea")]) == 2
    assert "did you mean 'vae'" in capsys.readouterr().err


def test_see_smoke_end_to_end_with_real_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`darla see --preset smoke` through the CLI, collecting real MiniWorld frames."""
    if not hasattr(darla.envs, "collect_frames"):
        pytest.skip("darla.envs.collect_frames is not available yet")
    argv = [*_cli_args(tmp_path), "--preset", "smoke", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = Path(result["see_dir"])
    assert (folder / "DONE.json").is_file() and (folder / "traversals.png").is_file()
    assert vision.load(folder).encode(np.zeros((1, SIZE, SIZE, 3), np.uint8)).shape == (1, 4)


@pytest.mark.parametrize(
    ("model", "upstream_model", "field"), [("iin", "beta_vae", "base"), ("beta_vae_dae", "dae", "dae_from")]
)
def test_retraining_the_upstream_model_changes_the_stage_hash(
    tmp_path: Path, fake_collect: list, model: str, upstream_model: str, field: str
) -> None:
    """A model built on another (iin's base, beta_vae_dae's DAE: one mechanism) re-runs when that one
    is retrained: the stage's hash covers the upstream model's content."""
    from darla.pipelines.stages.see import is_see_done

    latent = {**TINY, "latent_dim": 12}  # iin pairs need a unit per SeekAvoid factor (9)
    up = tiny_cfg(tmp_path, model=upstream_model, params=latent, model_params={}, model_train={})
    run_see(up)
    params = {field: str(up.folder)} if model == "iin" else {**latent, field: str(up.folder)}
    extra = {"pair_env": "SeekAvoid", "pairs": 64} if model == "iin" else {}
    cfg = tiny_cfg(tmp_path, model=model, params={**params, **extra})
    run_see(cfg)
    assert is_see_done(cfg)
    run_see(
        tiny_cfg(
            tmp_path, model=upstream_model, params={**latent, "hidden": 16}, model_params={}, model_train={}
        )
    )
    assert not is_see_done(cfg)  # same config, retrained upstream: the stage is stale


def test_cli_bench_see_reports_the_trainer_against_a_plain_loop(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "see", "--size", "32", "--batch-size", "8", "--steps", "2", "--warmup", "1"]
    argv += ["--rounds", "1", "--encode-frames", "16", "--encode-batch", "8", "--threads", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["trainer_images_per_s"] > 0 and result["plain_images_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["trainer_images_per_s"] / result["plain_images_per_s"], abs=0.01
    )
    assert result["encode_images_per_s"] > 0 and result["threads"] == 1
    assert result["host"]["cpu"] and result["host"]["torch_threads"] == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickle"])
def test_a_damaged_model_file_is_a_one_line_error_that_never_suggests_unpickling(
    tmp_path: Path, fake_collect: list, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    import pickle

    folder = run_see(tiny_cfg(tmp_path))
    model = folder / "model.pt"
    data = model.read_bytes()
    model.write_bytes(
        {
            "garbage": b"not a checkpoint\n" * 10,
            "truncated": data[: len(data) // 2],
            "pickle": pickle.dumps({"format": "darla.vision/1", "weights": Path("x")}),
        }[damage]
    )
    with pytest.raises(ArtifactError) as exc:
        vision.load(folder)
    assert str(model) in str(exc.value)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main(["evaluate", "--see", str(folder), "--dataset", "SeekAvoid"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error:") and str(model) in err and "darla see" in err
    assert "weights_only" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_changed_config_says_it_replaces_a_finished_folder(
    tmp_path: Path, fake_collect: list, caplog: pytest.LogCaptureFixture
) -> None:
    folder = run_see(tiny_cfg(tmp_path))
    caplog.clear()
    with caplog.at_level("WARNING"):
        run_see(tiny_cfg(tmp_path, params={**TINY, "beta": 2.0}))
    replaced = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(folder) in m and "another config" in m for m in replaced), replaced
