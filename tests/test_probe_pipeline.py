"""`darla probe`: linear probes of ground-truth factors from a frozen see model, per domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_see

import darla.envs as E
from darla.cli import main
from darla.errors import ConfigError
from darla.pipelines.analysis.probe import ProbeConfig, run


@pytest.fixture(scope="module")
def see_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tiny_see(tmp_path_factory.mktemp("probe_see")))


def test_probe_scores_every_domain_and_fits_on_the_models_sources(
    see_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["probe", "--see", str(see_dir), "--frames", "16", "--threads", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    seen = yaml.safe_load((see_dir / "config.yaml").read_text())["domains"]
    assert result["fit_domains"] == seen
    family = E.get_family("SeekAvoid")
    assert set(result["split"]) == set(family.domain_names())
    for d in family.domain_names("target"):
        assert result["split"][d] == "target"
    for factor in ("good_bearing", "bad_bearing"):
        per = result["accuracy"][factor]
        assert set(per) == set(family.domain_names()) and all(0.0 <= a <= 1.0 for a in per.values())
        assert set(result["summary"][factor]) == {"source", "target", "ood"}
        assert result["chance"][factor] == pytest.approx(0.2)
    on_disk = json.loads((see_dir / "probe.json").read_text())
    assert on_disk["accuracy"] == result["accuracy"] and on_disk["config"]["frames"] == 16
    assert (see_dir / "probe.png").stat().st_size > 0
    # one seed, one answer
    again = run(ProbeConfig(see=see_dir, frames=16, threads=1, out=see_dir / "again"))
    assert again["accuracy"] == result["accuracy"]


def test_probe_rejects_an_unknown_factor_naming_the_valid_ones(see_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"good_bearng.*good_bearing"):
        run(ProbeConfig(see=see_dir, factors=("good_bearng",), frames=8, threads=1, out=tmp_path))
    assert not (tmp_path / "probe.json").exists()


def test_probe_fits_on_chosen_domains_and_scores_them_on_held_out_frames(
    see_dir: Path, tmp_path: Path
) -> None:
    from darla.pipelines.analysis.probe import probe_stage

    default = run(ProbeConfig(see=see_dir, frames=16, threads=1, out=tmp_path / "default"))
    one_room = run(
        ProbeConfig(
            see=see_dir, frames=16, threads=1, out=tmp_path / "one", fit_domains=("brick_blueyellow",)
        )
    )
    assert one_room["fit_domains"] == ["brick_blueyellow"]
    assert set(one_room["split"]) == set(default["split"])  # every domain still scored
    # the fitted domain is scored on its 4 held-out frames (16 x 25%), the others on all 16
    good = one_room["accuracy"]["good_bearing"]
    assert (good["brick_blueyellow"] * 4).is_integer()
    assert good != default["accuracy"]["good_bearing"]
    # a probe stage at the default keeps its hash (finished probes stay finished); set, it is new
    plain = ProbeConfig(see=see_dir, out=tmp_path / "s")
    assert "fit_domains" not in probe_stage(plain).config["probe"]
    chosen = ProbeConfig(see=see_dir, out=tmp_path / "s", fit_domains=("brick_blueyellow",))
    assert probe_stage(chosen).hash != probe_stage(plain).hash
    with pytest.raises(ConfigError, match=r"brick_blueyelow.*brick_blueyellow"):
        run(
            ProbeConfig(
                see=see_dir, frames=8, threads=1, out=tmp_path / "bad", fit_domains=("brick_blueyelow",)
            )
        )
    assert not (tmp_path / "bad" / "probe.json").exists()


def test_run_probes_a_family_only_through_factors_its_ground_truth_has() -> None:
    """`darla run` probes the family's own `probe_factors`; a family without them (another kind of
    env, whose ground truth has other factors) is skipped, not failed after its see stage."""
    import dataclasses

    from darla.pipelines.analysis.probe import can_probe

    family = E.get_family("SeekAvoid")
    assert family.probe_factors == ("good_bearing", "bad_bearing") and can_probe(family)
    assert not can_probe(dataclasses.replace(family, probe_factors=()))
    assert not can_probe(dataclasses.replace(family, probe_factors=("goal_x",)))
