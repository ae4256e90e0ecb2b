"""`darla report` on transfer results with known numbers: tables, CIs, CSV, plot, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from darla.artifacts import atomic_write_json
from darla.cli import main
from darla.envs import get_family
from darla.errors import ArtifactError
from darla.pipelines.analysis.report import ReportConfig, write_report
from darla.pipelines.analysis.report_runs import load_run
from darla.pipelines.analysis.report_summary import summarise
from darla.pipelines.stages.transfer_results import build_results

FAMILY = get_family("SeekAvoid")
DOMAINS = [(d, s) for s in ("source", "target", "ood") for d in FAMILY.splits[s]]


def _write(
    run: Path,
    name: str,
    vision: str,
    mode: str,
    seed: int,
    level: dict[str, float],
    oracle: tuple[str, float] | None = None,
) -> None:  # an oracle of the policy's own kind, as `darla run` matches it
    """One policy's results.json: every episode of a split returns `level[split]` (+ seed offset);
    `oracle` = (its folder, its return on every target episode), default an unnamed 8.0."""
    oracle_dir, oracle_return = oracle or ("", 8.0)
    evals: dict[str, dict[str, dict[str, list[float]]]] = {"agent": {}, "random": {}, "oracle": {}}
    for domain, split in DOMAINS:
        value = level[split] + 0.1 * seed
        evals["agent"][domain] = {"returns": [value, value], "lengths": [10, 10]}
        evals["random"][domain] = {"returns": [-1.0, 0.0], "lengths": [10, 10]}
        if split == "target":
            evals["oracle"][domain] = {"returns": [oracle_return] * 2, "lengths": [10, 10]}
    meta = {"env": "SeekAvoid", "vision": vision, "mode": mode, "algo": "ppo", "agent_seed": seed}
    if oracle_dir:
        meta["oracle"] = oracle_dir
        meta["oracle_policy"] = {"vision": vision, "mode": mode, "algo": "ppo"}
    meta.update(episodes=2, eval_seed=0)
    results = build_results(FAMILY, DOMAINS, evals, meta)
    atomic_write_json(run / "transfer" / name / "ppo" / f"s{seed}" / "results.json", results)


def _write_darla_and_pixels(
    run: Path,
    seeds: int,
    darla: dict[str, float],
    pixels: dict[str, float],
    oracles: tuple[tuple[str, float] | None, tuple[str, float] | None] = (None, None),
) -> None:
    """A frozen beta_vae_dae and a pixels method over `seeds` seeds, at the given split levels."""
    for seed in range(seeds):
        _write(run, "beta_vae_dae", "beta_vae_dae", "frozen", seed, darla, oracles[0])
        _write(run, "pixels", "pixels", "pixels", seed, pixels, oracles[1])


@pytest.fixture
def run(tmp_path: Path) -> Path:
    _write_darla_and_pixels(
        tmp_path, 3, {"source": 4.0, "target": 3.0, "ood": 2.0}, {"source": 8.0, "target": 2.0, "ood": 1.0}
    )
    # an episode cache file must not be mistaken for a policy
    atomic_write_json(tmp_path / "transfer" / ".episodes" / "results.json", {"key": {}})
    return tmp_path


def test_summary_numbers(run: Path) -> None:
    cfg = ReportConfig(run=run, reps=500)
    runs = load_run(run)
    assert len(runs) == 6
    s = summarise(runs, cfg)
    darla, pixels = s["methods"]["beta_vae_dae/frozen/ppo"], s["methods"]["pixels/ppo"]
    assert darla["n"] == 3 and darla["aggregate"] == "mean"
    # seeds add 0, 0.1, 0.2: the mean over seeds adds 0.1
    assert darla["splits"]["source"].point == pytest.approx(4.1)
    assert darla["splits"]["target"].point == pytest.approx(3.1)
    assert pixels["splits"]["ood"].point == pytest.approx(1.1)
    est = darla["splits"]["target"]
    assert est.low <= est.point <= est.high and est.low >= 3.0 - 1e-9 and est.high <= 3.2 + 1e-9
    assert darla["transfer_ratio"].point == pytest.approx(3.1 / 4.1)
    assert pixels["transfer_ratio"].point == pytest.approx(2.1 / 8.1)
    assert darla["gap"].point == pytest.approx(1.0)
    assert darla["oracle_ratio"].point == pytest.approx(3.1 / 8.0)
    assert darla["random"]["target"] == pytest.approx(-0.5)
    assert darla["oracle"]["target"] == pytest.approx(8.0)
    rows = {d.domain: d for d in s["domains"]}
    assert set(rows) == {d for d, _ in DOMAINS}
    assert rows[FAMILY.splits["target"][0]].oracle == pytest.approx({"oracle": 8.0})
    assert np.isnan(rows[FAMILY.splits["source"][0]].oracle["oracle"])


def test_each_method_is_measured_against_its_own_oracle(tmp_path: Path) -> None:
    """A run with a frozen and a pixel oracle: two ceilings, each named, none averaged into the other."""
    frozen_oracle = (str(tmp_path / "oracle" / "act" / "beta_vae_dae" / "ppo" / "s0"), 4.0)
    pixel_oracle = (str(tmp_path / "oracle" / "act" / "pixels" / "ppo" / "s0"), 12.0)
    _write_darla_and_pixels(
        tmp_path,
        2,
        {"source": 4, "target": 2, "ood": 1},
        {"source": 8, "target": 6, "ood": 1},
        (frozen_oracle, pixel_oracle),
    )
    s = summarise(load_run(tmp_path), ReportConfig(run=tmp_path, reps=200))
    assert s["methods"]["beta_vae_dae/frozen/ppo"]["oracle"]["target"] == pytest.approx(4.0)
    assert s["methods"]["pixels/ppo"]["oracle_ratio"].point == pytest.approx(6.05 / 12.0)
    named = {"oracle beta_vae_dae/frozen/ppo": 4.0, "oracle pixels/ppo": 12.0}  # as results.json names them
    assert {k: v["splits"]["target"] for k, v in s["oracles"].items()} == pytest.approx(named)
    target = next(d for d in s["domains"] if d.split == "target")
    assert target.oracle == pytest.approx(named)
    md = (write_report(ReportConfig(run=tmp_path, reps=200)) / "report.md").read_text()
    assert "*oracle pixels/ppo (target-trained; ceiling of pixels/ppo)*" in md
    assert "| oracle beta_vae_dae/frozen/ppo | oracle pixels/ppo |" in md


def test_iqm_with_four_seeds_ignores_one_broken_seed(tmp_path: Path) -> None:
    for seed in range(4):
        level = 100.0 if seed == 3 else 1.0
        _write(tmp_path, "m", "vae", "frozen", seed, {"source": level, "target": level, "ood": level})
    s = summarise(load_run(tmp_path), ReportConfig(run=tmp_path, reps=200))
    row = s["methods"]["vae/frozen/ppo"]
    assert row["aggregate"] == "IQM"
    # per seed: 1.0, 1.1, 1.2, 100.3 -> IQM = mean(1.1, 1.2)
    assert row["splits"]["source"].point == pytest.approx(1.15)


def test_files_written(run: Path) -> None:
    out = write_report(ReportConfig(run=run, reps=300))
    assert out == run / "report"
    md = (out / "report.md").read_text()
    assert "How to read this" in md and "random floor" in md and "oracle" in md
    assert "beta_vae_dae/frozen/ppo" in md and "pixels/ppo" in md
    assert "0.76 [" in md  # DARLA's transfer ratio 3.1 / 4.1
    for domain, _ in DOMAINS:
        assert domain in md
    png = (out / "transfer.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 3 * len(DOMAINS)  # method x seed x domain
    first = next(r for r in rows if r["method"] == "pixels/ppo" and r["seed"] == "2" and r["split"] == "ood")
    assert float(first["mean_return"]) == pytest.approx(1.2)
    assert float(first["random_mean"]) == pytest.approx(-0.5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"]["pixels/ppo"]["splits"]["source"]["point"] == pytest.approx(8.1)


def test_same_inputs_same_intervals(run: Path) -> None:
    a = summarise(load_run(run), ReportConfig(run=run, reps=300, seed=3))
    b = summarise(load_run(run), ReportConfig(run=run, reps=300, seed=3))
    assert a["methods"]["pixels/ppo"]["transfer_ratio"] == b["methods"]["pixels/ppo"]["transfer_ratio"]


def test_cli(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--run", str(run), "--reps", "200"]) == 0
    text = capsys.readouterr().out
    assert "beta_vae_dae/frozen/ppo" in text and "report.md" in text
    assert main(["report", "--run", str(run), "--reps", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {row["method"] for row in result["table"]} == {"beta_vae_dae/frozen/ppo", "pixels/ppo"}


def test_missing_results_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ArtifactError, match="no transfer"):
        write_report(tmp_path)
    (tmp_path / "transfer").mkdir()
    with pytest.raises(ArtifactError, match="no transfer results"):
        write_report(tmp_path)
    assert main(["report"]) == 2
    assert "--run" in capsys.readouterr().err


def test_report_limited_to_given_folders(run: Path) -> None:
    folders = [run / "transfer" / "pixels" / "ppo" / f"s{seed}" for seed in range(3)]
    out = write_report(ReportConfig(run=run, reps=100), folders)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["pixels/ppo"]


def test_ratio_above_the_random_floor(run: Path) -> None:
    s = summarise(load_run(run), ReportConfig(run=run, reps=100))
    # floors: -0.5 on every split; DARLA (3.1 + 0.5) / (4.1 + 0.5)
    assert s["methods"]["beta_vae_dae/frozen/ppo"]["normalized_transfer_ratio"].point == pytest.approx(
        3.6 / 4.6
    )


def test_a_sampled_only_evaluation_is_labelled_as_such(tmp_path: Path) -> None:
    _write(tmp_path, "pixels", "pixels", "pixels", 0, {"source": 8.0, "target": 2.0, "ood": 1.0})
    path = tmp_path / "transfer" / "pixels" / "ppo" / "s0" / "results.json"
    data = json.loads(path.read_text())
    atomic_write_json(path, {**data, "deterministic": False})
    assert [r.method for r in load_run(tmp_path)] == ["pixels/ppo (sampled)"]
