"""darla.envs: frame collection, vectorised envs and the `darla envs` / `darla bench env` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import darla.envs as E
from darla.cli import main
from darla.envs.frames import FrameDataset, default_cache_dir
from darla.errors import ArtifactError, UnknownNameError


def test_frames_round_trip_and_cache_reuse(tmp_path: Path) -> None:
    domains = ["brick_greenred", "marble_blueyellow"]
    ds = E.collect_frames("SeekAvoid", domains, 50, seed=3, size=32, workers=1, cache_dir=tmp_path)
    assert isinstance(ds, FrameDataset) and len(ds) == 50
    assert ds.frames.shape == (50, 32, 32, 3) and ds.frames.dtype == np.uint8
    assert isinstance(ds.frames, np.memmap) and not ds.frames.flags.writeable
    assert ds.domain_names == tuple(domains)
    assert ds.domain_ids.dtype == np.int16 and np.bincount(ds.domain_ids).tolist() == [25, 25]
    assert ds.factors.shape == (50, len(ds.factor_names)) and ds.factors.dtype == np.int64
    assert (ds.factors[:, ds.factor_names.index("wall")] >= 0).all()
    assert ds.frames.std() > 5  # real renders, not zeros
    reopened = FrameDataset.open(ds.path)
    assert np.array_equal(reopened.frames, ds.frames) and np.array_equal(reopened.factors, ds.factors)
    # the same request returns the same files without collecting again
    created = ds.meta["created_at"]
    again = E.collect_frames("SeekAvoid", domains, 50, seed=3, size=32, workers=1, cache_dir=tmp_path)
    assert again.path == ds.path and again.meta["created_at"] == created
    other = E.collect_frames("SeekAvoid", domains, 50, seed=4, size=32, workers=1, cache_dir=tmp_path)
    assert other.path != ds.path and not np.array_equal(other.frames, ds.frames)
    # an unfinished folder (no meta.json) is not a dataset
    (ds.path / "meta.json").unlink()
    with pytest.raises(ArtifactError, match=r"meta\.json"):
        FrameDataset.open(ds.path)


def test_frames_do_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    kwargs = {"seed": 0, "size": 32, "policy": "mixed"}
    one = E.collect_frames("FetchObject", ["source"], 300, workers=1, cache_dir=tmp_path / "a", **kwargs)
    two = E.collect_frames("FetchObject", ["source"], 300, workers=2, cache_dir=tmp_path / "b", **kwargs)
    assert two.meta["workers"] == 2
    assert np.array_equal(one.frames, two.frames) and np.array_equal(one.factors, two.factors)


def test_mixed_policy_shows_objects_more_often_than_a_random_walk(tmp_path: Path) -> None:
    fractions = {}
    for policy in ("random", "mixed"):
        ds = E.collect_frames(
            "SeekAvoid",
            ["brick_greenred"],
            400,
            seed=1,
            size=32,
            policy=policy,
            workers=1,
            cache_dir=tmp_path,
        )
        fractions[policy] = ds.meta["in_view_fraction"]
        assert fractions[policy] == pytest.approx(float(np.mean(ds.in_view)))
    assert fractions["mixed"] > fractions["random"] + 0.1, fractions


def test_default_cache_dir_follows_darla_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DARLA_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "frames"
    with pytest.raises(UnknownNameError, match="mixed"):
        E.collect_frames("SeekAvoid", ["source"], 10, seed=0, policy="greedy")


def test_vec_env_per_worker_domains(caplog: pytest.LogCaptureFixture) -> None:
    vec = E.make_vec_env(
        "SeekAvoid",
        ["brick_greenred", "marble_greenred"],
        3,
        seed=0,
        size=32,
        vec="dummy",
        max_episode_steps=3,
    )
    obs = vec.reset()
    assert obs.shape == (3, 32, 32, 3) and obs.dtype == np.uint8
    assert [i["domain"] for i in vec.reset_infos] == ["brick_greenred", "marble_greenred", "brick_greenred"]
    for _ in range(7):
        *_, infos = vec.step(np.array([2, 2, 2]))
        assert [i["domain"] for i in infos] == ["brick_greenred", "marble_greenred", "brick_greenred"]
    vec.close()
    # 3 envs over 2 domains: brick_greenred gets twice the experience, which the user must hear about
    assert "unequal shares" in caplog.text and "'brick_greenred': 2" in caplog.text


def test_vec_env_per_episode_domains_are_seeded() -> None:
    def domains_seen(seed: int, kind: str) -> list[str]:
        vec = E.make_vec_env(
            "SeekAvoid", ["source"], 2, seed=seed, size=32, vec=kind, domain_mode="per_episode",
            max_episode_steps=2,
        )  # fmt: skip
        vec.reset()
        seen = [i["domain"] for i in vec.reset_infos]
        for _ in range(12):
            _, _, dones, infos = vec.step(np.array([0, 1]))
            seen += [i["domain"] for i, d in zip(infos, dones) if not d]
        vec.close()
        return seen

    a, b = domains_seen(0, "dummy"), domains_seen(0, "subproc")
    assert a == b  # same seed, same domain sequence, whatever the vectorisation
    assert set(a) == set(E.get_family("SeekAvoid").splits["source"])
    assert domains_seen(1, "dummy") != a


def test_cli_envs_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    entry = data["envs"]["SeekAvoid"]
    assert entry["id"] == "darla/SeekAvoid-v0"
    assert set(entry) == {"id", "source", "target", "ood"}
    assert "marble_blueyellow" in entry["target"] and "FetchObject" in data["envs"]
    assert main(["envs", "list"]) == 0
    assert "brick_greenred" in capsys.readouterr().out


def test_cli_envs_show_writes_one_row_per_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    out = tmp_path / "grid.png"
    argv = ["envs", "show", "SeekAvoid", "--domain", "brick_greenred", "target", "--out", str(out)]
    assert main([*argv, "--frames", "2", "--size", "32", "--scale", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["domains"] == ["brick_greenred", *E.get_family("SeekAvoid").splits["target"]]
    image = np.asarray(Image.open(out))
    assert image.shape[0] == 4 * (32 + 2) and image.std() > 10


def test_cli_unknown_names_list_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs", "show", "SeekAvoyd", "--out", "x.png"]) == 2
    assert "FetchObject" in capsys.readouterr().err
    assert main(["envs", "show", "SeekAvoid", "--domain", "nope", "--out", "x.png"]) == 2
    assert "brick_greenred" in capsys.readouterr().err


def test_cli_bench_env_reports_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "bench",
        "env",
        "--json",
        "--steps",
        "20",
        "--repeats",
        "1",
        "--collect-frames",
        "20",
        "--size",
        "32",
    ]
    assert main([*argv, "--domains", "brick_greenred"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ratio"] > 0 and result["collect_ratio"] > 0
    assert set(result["steps_per_s"]) == {"brick_greenred"} and result["oneroom_steps_per_s"] > 0
    assert result["host"]["cores"] >= 1 and result["host"]["cpu"]
