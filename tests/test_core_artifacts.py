from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from darla.artifacts import StageDir, atomic_path, atomic_write_json, file_hash, read_json, read_stage_config
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
    assert read_stage_config(tmp_path / "s", Cfg) == Cfg(2)


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
    with pytest.raises(ArtifactError, match="not found"):
        read_stage_config(tmp_path / "nope", Cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a darla stage folder"):
        read_stage_config(tmp_path / "empty", Cfg)
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
