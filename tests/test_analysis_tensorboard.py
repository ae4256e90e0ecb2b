"""A trial's hyperparameters and final metrics, read back the way tensorboard's HParams plugin reads them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from analysis_fixture import sweep_trials
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from darla.errors import ConfigError
from darla.pipelines.analysis import trial_hparams, trial_metrics, write_hparams, write_trial_hparams


def _read(folder: Path) -> tuple[dict[str, object], dict[str, float], list[str]]:
    """(hparams of the session, last value of each scalar, hparams plugin tags) in `folder`."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = HParamsPluginData.FromString(content[metadata.SESSION_START_INFO_TAG]).session_start_info
    hparams: dict[str, object] = {}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        hparams[key] = getattr(value, kind)
    scalars = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    return hparams, scalars, sorted(content)


def test_trial_hparams_and_metrics_round_trip(tmp_path: Path) -> None:
    trial = next(t for t in sweep_trials() if t.method == "beta_vae_dae/frozen/ppo")
    event_file = write_trial_hparams(trial, tmp_path / "trial")
    assert event_file.parent == tmp_path / "trial"  # in the folder itself, no timestamped subfolder
    hparams, scalars, tags = _read(tmp_path / "trial")
    assert metadata.EXPERIMENT_TAG in tags and metadata.SESSION_END_INFO_TAG in tags
    assert hparams["vision"] == "beta_vae_dae" and hparams["mode"] == "frozen" and hparams["algo"] == "ppo"
    assert hparams["seed"] == trial.seed and hparams["see.beta"] == 1.0 and hparams["act.n_steps"] == 128
    assert hparams["readout"] == "latent"
    assert scalars["final/transfer_ratio"] == pytest.approx(trial.transfer_ratio, rel=1e-6)
    assert scalars["final/target_return"] == pytest.approx(trial.split_mean("target"), rel=1e-6)
    assert scalars["disentanglement/mig"] == pytest.approx(0.30, rel=1e-6)
    assert "final/ood_oracle" not in scalars  # the fixture's oracle ran on targets only: NaN left out


def test_rewriting_a_trial_replaces_its_session(tmp_path: Path) -> None:
    write_hparams(tmp_path, {"algo": "ppo", "lr": 1e-3}, {"final/x": 1.0})
    write_hparams(tmp_path, {"algo": "a2c", "lr": 1e-3}, {"final/x": 2.0})
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    hparams, scalars, _ = _read(tmp_path)
    assert hparams["algo"] == "a2c" and scalars["final/x"] == 2.0


def test_hparam_values_and_bad_metrics(tmp_path: Path) -> None:
    pixels = next(t for t in sweep_trials() if t.mode == "pixels")
    hp = trial_hparams(pixels)
    assert "see_seed" not in hp  # None: no vision model, left out rather than a fake value
    metrics = trial_metrics(pixels)
    assert all(math.isfinite(v) for v in metrics.values()) and "disentanglement/mig" not in metrics
    write_hparams(tmp_path, {"layers": (32, 64), "nested": {"a": None, "b": True}}, {"m": math.nan, "n": 1.0})
    hparams, scalars, _ = _read(tmp_path)
    assert hparams["layers"] == "[32, 64]" and hparams["nested.b"] == "True" and "nested.a" not in hparams
    assert set(scalars) == {"n"}
    with pytest.raises(ConfigError, match="numbers"):
        write_hparams(tmp_path, {"a": 1}, {"m": "high"})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="at least one metric"):
        write_hparams(tmp_path, {"a": 1}, {})
