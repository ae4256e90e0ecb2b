"""`darla bench compare`: independent trials, timed on 1 and 2 local workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darla.cli import main
from darla.errors import ConfigError
from darla.pipelines.bench.compare import BenchCompareConfig, plan_trials, trial_configs

TINY_TRIAL = [
    "see={size: 36, frames: 64, workers: 1, threads: 1, params: {latent_dim: 4, channels: [8, 8], hidden: 16},"
    " train: {steps: 2, batch_size: 16, image_every: 0}}",
    "act={timesteps: 16, n_envs: 2, vec: dummy, max_episode_steps: 8, eval_freq: 0, checkpoint_freq: 0,"
    " algo_hparams: {ppo: {n_steps: 8, batch_size: 16, n_epochs: 1}}}",
    "transfer={episodes: 1, n_envs: 1, vec: dummy}",
    "models=[ae]",
    "modes=[frozen]",
    "oracle=false",
    "probe_frames=0",
]


def test_trials_share_nothing(tmp_path: Path) -> None:
    cfg = BenchCompareConfig(trials=3, trial={"modes": ["frozen", "pixels"]})
    runs = trial_configs(cfg, tmp_path)
    assert [r.seed for r in runs] == [0, 1, 2]
    tasks = plan_trials(runs, threads=1)
    by_trial = [{t.folder for t in tasks if Path(r.out) in t.folder.parents} for r in runs]
    assert sum(map(len, by_trial)) == len({t.folder for t in tasks})  # every task in exactly one trial
    assert all(len(f) == len(by_trial[0]) > 2 for f in by_trial)  # each trial: see, act, transfer at least


def test_bad_settings_fail_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="trials"):
        BenchCompareConfig(trials=1).validate()
    with pytest.raises(ConfigError, match="quick"):
        BenchCompareConfig(trial_preset="nope").validate()
    with pytest.raises(ConfigError, match="seed"):
        BenchCompareConfig(trial={"seed": 3}).validate()


@pytest.mark.slow  # four tiny pipelines: about a minute on an idle 2-core machine
def test_cli_bench_compare_times_both_worker_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "compare", "--trials", "2", "--no-ray", "--scratch", str(tmp_path), "--json"]
    assert main([*argv, "--trial", *TINY_TRIAL]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["seconds"]) == {"workers_1", "workers_2"}
    assert result["ratio"] == pytest.approx(
        result["seconds"]["workers_2"] / result["seconds"]["workers_1"], abs=0.01
    )
    assert "ray_seconds" not in result
    for setting in ("workers-1", "workers-2"):  # both settings ran every trial to the end
        assert len(list((tmp_path / setting).rglob("results.json"))) >= 2
