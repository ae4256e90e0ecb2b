from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import yaml

from darla.artifacts import (
    ActArtifact,
    SeeArtifact,
    StageDir,
    atomic_path,
    atomic_write_json,
    file_hash,
    read_json,
)
from darla.errors import ArtifactError
from darla.seeding import derive_seed, make_rng


@dataclass
class Cfg:
    steps: int = 1


def test_atomic_write_keeps_old_content_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_stage_dir_done_only_for_the_same_config(tmp_path):
    stage = StageDir(tmp_path / "s", Cfg(1))
    assert not stage.is_done()
    stage.prepare()
    assert not stage.is_done()
    stage.mark_done(note="x")
    assert stage.is_done() and json.loads((tmp_path / "s" / "DONE.json").read_text())["note"] == "x"
    changed = StageDir(tmp_path / "s", Cfg(2))
    assert not changed.is_done()
    changed.prepare()  # a stale marker is removed, the new config written
    assert not (tmp_path / "s" / "DONE.json").exists()
    assert yaml.safe_load((tmp_path / "s" / "config.yaml").read_text()) == {"steps": 2}


def test_a_finished_stage_names_the_host_it_ran_on(tmp_path):
    """Bit-for-bit reproducibility holds per CPU kind, so the marker records CPU and torch build."""
    import torch

    stage = StageDir(tmp_path / "s", Cfg(1))
    stage.prepare()
    stage.mark_done()
    host = json.loads((tmp_path / "s" / "DONE.json").read_text())["host"]
    assert host["cpu"] and host["cores"] >= 1
    assert host["torch"] == torch.__version__
    assert host["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert host["torch_threads"] == torch.get_num_threads()


def test_missing_or_foreign_stage_folders_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="see folder not found"):
        SeeArtifact.read(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a darla act folder"):
        ActArtifact.read(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ArtifactError, match="corrupt JSON"):
        read_json(tmp_path / "bad.json")


def test_file_hash_changes_with_content(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"a")
    h1 = file_hash(p)
    p.write_bytes(b"b")
    assert h1 != file_hash(p) and len(h1) == 16


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "see") == derive_seed(0, "see")
    assert derive_seed(0, "see") != derive_seed(0, "act") != derive_seed(1, "see")
    assert make_rng(3, "x").integers(1 << 30) == make_rng(3, "x").integers(1 << 30)


def test_hidden_progress_bar_logs_every_tenth(caplog):
    """Without a terminal (CI, nohup, logs) long work still reports progress, ten lines in all."""
    import logging

    from darla.log import progress

    with caplog.at_level(logging.INFO, logger="darla.progress"):
        bar = progress(total=50, desc="train", unit="step")
        assert bar.disable  # pytest captures stderr, so it is not a terminal
        for i in range(50):
            bar.set_postfix(loss=i)
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "darla.progress"]
    assert [line.split(" (")[0] for line in lines] == [f"train: {k}/50" for k in range(5, 51, 5)]
    assert lines[-1].startswith("train: 50/50 (100%)") and "loss=49" in lines[-1]


def test_resumed_progress_bar_rates_only_this_process_work(caplog, monkeypatch):
    """A run resumed at step 20 of 50 reports 30 steps in 10 s as 3 step/s, not 50 / 10 s or 20 / 0 s."""
    import logging

    import darla.log
    from darla.log import progress

    clock = iter([0.0] + [10.0] * 100)
    monkeypatch.setattr(darla.log.time, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="darla.progress"):
        bar = progress(total=50, desc="train", unit="step", initial=20)
        for _ in range(30):
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "darla.progress"]
    assert [line.split(" (")[0] for line in lines] == [f"train: {k}/50" for k in range(25, 51, 5)]
    assert ", 3.0 step/s" in lines[-1]


def test_replacing_a_finished_folder_of_another_config_is_logged(tmp_path, caplog):
    folder = tmp_path / "s"
    stage = StageDir(folder, Cfg(1))
    stage.prepare()
    stage.mark_done()
    with caplog.at_level("WARNING"):
        StageDir(folder, Cfg(1)).prepare()  # same config: nothing to say
        assert not caplog.records
        StageDir(folder, Cfg(2)).prepare()
    (record,) = caplog.records
    assert record.levelname == "WARNING" and str(folder) in record.getMessage()
    assert "another config" in record.getMessage()


def test_inputs_join_the_config_in_the_record_and_the_hash_but_not_in_the_config_class(tmp_path):
    """A stage's resolved inputs (what it read) are recorded beside its config and decide its hash
    as fields of the config did before they moved out of it; the typed reader splits them off."""
    from darla.config import config_hash, hash_dict

    @dataclasses.dataclass
    class Act:
        env: str = "SeekAvoid"
        algo: str = "ppo"
        seed: int = 0

    inputs = {"vision_model": "beta_vae", "vision_hash": "abc"}
    stage = StageDir(tmp_path / "a", Act(), inputs=inputs, notes={"vision_checkpoint": "/x/model.pt"})
    assert stage.hash == config_hash({**hash_dict(Act()), **inputs})
    stage.prepare()
    stage.mark_done()
    act = ActArtifact.read(tmp_path / "a")
    assert act.vision_model == "beta_vae" and act.raw["vision_checkpoint"] == "/x/model.pt"
    assert act.config(Act) == Act() and act.completion_hash.startswith(stage.hash + "@")
    assert StageDir(tmp_path / "a", Act(), inputs={**inputs, "vision_hash": "other"}).is_done() is False


def test_a_see_folder_is_not_an_act_folder_and_an_unfinished_one_says_so(tmp_path):
    folder = tmp_path / "see" / "beta_vae"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"env": "SeekAvoid", "model": "beta_vae", "domains": ["a"]})
    )
    with pytest.raises(ArtifactError, match=r"is a see folder .* not an act folder"):
        ActArtifact.read(folder)
    with pytest.raises(ArtifactError, match="not finished"):
        SeeArtifact.read(folder)
    see = SeeArtifact.read(folder / "model.pt", finished=False)
    assert see.path == folder and see.model == "beta_vae" and see.domains == ("a",) and see.upstream == {}
