"""Table 1, the per-backbone table, results.csv and the written sweep report, on a hand-made sweep."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from analysis_fixture import SPLIT_OF, make_trial, sweep_trials
from PIL import Image
from rliable import library, metrics

from darla.errors import ConfigError, UnknownNameError
from darla.pipelines.analysis import (
    SPLITS,
    AnalysisConfig,
    TrialResult,
    analyse,
    results_csv,
    split_scores,
    table1,
    table1_markdown,
    write_sweep_report,
)
from darla.pipelines.analysis.rl_stats import ratio_ci

CFG = AnalysisConfig(reps=200, poi_reps=60, seed=3)


@pytest.fixture(scope="module")
def trials() -> list[TrialResult]:
    return sweep_trials()


@pytest.fixture(scope="module")
def report(trials: list[TrialResult], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep_report(
        trials, tmp_path_factory.mktemp("sweep") / "report", CFG, title="fixture"
    ).folder


def _rliable_iqm(x: np.ndarray, seed: int, reps: int) -> tuple[float, float, float]:
    np.random.seed(seed)
    point, ci = library.get_interval_estimates(
        {"m": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps
    )
    low, high = np.asarray(ci["m"]).ravel()
    return float(point["m"][0]), float(low), float(high)


def test_splits_match_the_env_families() -> None:
    from darla.envs.domains import SPLITS as ENV_SPLITS

    assert ENV_SPLITS == SPLITS


def test_table1_numbers_are_rliables(trials: list[TrialResult]) -> None:
    t1 = table1(trials, CFG)
    cells = {(c.row.name, c.algo): c for c in t1.cells}
    darla = cells[("DARLA", "ppo")].variants
    assert len(darla) == 1 and darla[0].runs == 4
    darla_trials = [t for t in trials if t.method == "beta_vae_dae/frozen/ppo"]
    for split in ("source", "target"):
        matrix = split_scores(darla_trials, split).values
        assert matrix.shape == (4, 2)
        est = darla[0].splits[split]
        assert (est.point, est.low, est.high) == pytest.approx(_rliable_iqm(matrix, CFG.seed, CFG.reps))
    src = [t.split_mean("source") for t in darla_trials]
    tgt = [t.split_mean("target") for t in darla_trials]
    assert darla[0].transfer_ratio == ratio_ci(tgt, src, reps=CFG.reps, seed=CFG.seed)
    assert cells[("DARLA_FT", "ppo")].variants[0].runs == 3
    assert cells[("DARLA_DAE", "ppo")].variants[0].runs == 3
    assert cells[("pixels", "ppo")].variants[0].runs == 3
    # the sweep's beta_vae has beta 4: no entangled (beta = 1) model was run
    assert cells[("DARLA_ENT", "ppo")].variants == ()
    assert t1.floor["ppo"]["target"] == pytest.approx(-0.5)
    assert set(t1.oracles["ppo"]) == {"oracle beta_vae_dae/frozen/ppo", "oracle pixels/ppo"}
    reused = analyse(trials, CFG).table1  # reuses the per-backbone summaries: the same table
    assert table1_markdown(reused) == table1_markdown(t1)
    text = table1_markdown(t1)
    assert "| DARLA_ENT | entangled: beta-VAE with beta = 1, frozen | not run |" in text
    assert "*random floor*" in text and darla[0].splits["target"].format() in text


def test_table1_keeps_variants_apart(trials: list[TrialResult]) -> None:
    """Two betas of the entangled row are two rows, never pooled into one."""
    extra = [
        make_trial(
            "beta_vae/frozen/ppo",
            "beta_vae",
            "frozen",
            s,
            level=8.0,
            kept=0.5,
            see_seed=9,
            see_params={"beta": 1.0},
        )
        for s in range(2)
    ]
    extra += [
        make_trial(
            "beta_vae[b1x]/frozen/ppo",
            "beta_vae",
            "frozen",
            s,
            level=8.0,
            kept=0.5,
            see_seed=8,
            see_params={"beta": 1},
        )
        for s in range(2)
    ]
    t1 = table1([*trials, *extra], CFG)
    ent = next(c for c in t1.cells if c.row.name == "DARLA_ENT")
    assert [v.runs for v in ent.variants] == [2, 2]
    assert all(v.label.startswith("DARLA_ENT (") for v in ent.variants)


def test_results_csv_one_row_per_trial_and_domain(trials: list[TrialResult]) -> None:
    rows = list(csv.DictReader(io.StringIO(results_csv(trials))))
    assert len(rows) == len(trials) * len(SPLIT_OF)
    first = next(r for r in rows if r["method"] == "beta_vae_dae/frozen/ppo" and r["seed"] == "0")
    trial = next(t for t in trials if t.method == "beta_vae_dae/frozen/ppo" and t.seed == 0)
    assert first["domain"] == "src_a" and first["split"] == "source"
    assert float(first["mean_return"]) == pytest.approx(trial.returns["src_a"])
    assert float(first["transfer_ratio"]) == pytest.approx(trial.transfer_ratio)
    assert float(first["mig"]) == pytest.approx(0.30) and first["see.beta"] == "1.0"
    pixels = next(r for r in rows if r["method"] == "pixels/ppo")
    assert pixels["mig"] == "" and pixels["see_seed"] == ""  # not measured: an empty cell


def test_trial_validation() -> None:
    with pytest.raises(UnknownNameError, match="source, target, ood"):
        TrialResult("m", "ae", "frozen", "ppo", 0, "SeekAvoid", {"a": 1.0}, {"a": "train"})
    with pytest.raises(ConfigError, match="without a split"):
        TrialResult("m", "ae", "frozen", "ppo", 0, "SeekAvoid", {"a": 1.0, "b": 2.0}, {"a": "source"})
    t = TrialResult(
        "m", "ae", "frozen", "ppo", 0, "SeekAvoid", {"a": 0.0, "b": 1.0}, {"a": "source", "b": "target"}
    )
    assert math.isnan(t.transfer_ratio)  # a source return of 0: the ratio is undefined, not inf


def test_sweep_report_files(report: Path, trials: list[TrialResult]) -> None:
    text = (report / "report.md").read_text()
    for section in (
        "## DARLA's Table 1 on SeekAvoid",
        "## Per backbone",
        "## Probability of improvement",
        "## Disentanglement against transfer",
        "## Notes",
    ):
        assert section in text
    assert "modularity vs transfer_ratio: x is constant" in text
    for name in ("backbones.png", "poi.png", "disentanglement_vs_transfer.png"):
        assert f"]({name})" in text
        with Image.open(report / name) as img:
            assert img.format == "PNG" and img.size[0] > 600 and img.size[1] > 300
    summary = json.loads((report / "summary.json").read_text())
    assert summary["env"] == "SeekAvoid" and summary["trials"] == len(trials)
    mig = next(
        d
        for d in summary["disentanglement_vs_transfer"]
        if (d["metric"], d["outcome"]) == ("mig", "transfer_ratio")
    )
    assert mig["rho"] > 0.5 and mig["clusters"] == 7
    pairs = {(p["x"], p["y"]) for p in summary["probability_of_improvement"]}
    assert ("pixels/ppo", "dae/frozen/ppo") in pairs and len(pairs) == 6 * 5


def test_sweep_report_is_deterministic(report: Path, trials: list[TrialResult], tmp_path: Path) -> None:
    again = write_sweep_report(list(reversed(trials)), tmp_path / "again", CFG, title="fixture").folder
    for name in ("report.md", "results.csv", "summary.json"):
        assert (again / name).read_text() == (report / name).read_text(), name


def test_analyse_rejects_bad_sweeps(trials: list[TrialResult]) -> None:
    other_env = make_trial("ae/frozen/ppo", "ae", "frozen", 0, level=1.0, kept=1.0, env="FetchObject")
    with pytest.raises(ConfigError, match="one env family"):
        analyse([*trials, other_env], CFG)
    with pytest.raises(ConfigError, match="no trials"):
        analyse([], CFG)
    with pytest.raises(UnknownNameError, match="iqm"):
        analyse(trials, AnalysisConfig(aggregate="best"))


def test_one_seed_sweep_reports_na_with_reason(tmp_path: Path) -> None:
    lone = [make_trial("ae/frozen/ppo", "ae", "frozen", 0, level=4.0, kept=0.5, see_seed=0)]
    out = write_sweep_report(lone, tmp_path / "one", CFG)
    text = out.report.read_text()
    assert "one run: no spread to resample" in text
    assert "One method only" in text and "No trial carries disentanglement scores" in text
    assert set(out.figures) == {"backbones"}
