"""`darla transfer` on a real (tiny) see + act run: every domain, floor, oracle, seeds, leaks.

Budgets are tiny (32x32 frames, 12-step episodes, 2 episodes per domain): the tests check the
evaluation protocol, artifacts and errors, not learning.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import tiny_see

from darla.agents.evaluation import EnvPool, episodes_for, random_action_fn, run_episodes
from darla.artifacts import DONE, read_json
from darla.cli import main
from darla.config import from_dict
from darla.envs import get_family
from darla.errors import ArtifactError, ConfigError
from darla.pipelines.stages.act import ActConfig, run_act
from darla.pipelines.stages.transfer import TransferConfig, run_transfer

FAMILY = get_family("SeekAvoid")
ALL_DOMAINS = [d for s in ("source", "target", "ood") for d in FAMILY.splits[s]]


def _act(out: Path, see: Path, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "see": str(see),
        "env": "SeekAvoid",
        "algo": "ppo",
        "mode": "frozen",
        "out": str(out),
        "timesteps": 32,
        "n_envs": 2,
        "vec": "dummy",
        "max_episode_steps": 12,
        "eval_freq": 0,
        "eval_episodes": 3,
        "checkpoint_freq": 0,
        "threads": 1,
        "hparams": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    }
    data.update(extra)
    return run_act(from_dict(ActConfig, data))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a finished tiny see, one source-trained policy and one target oracle."""
    out = tmp_path_factory.mktemp("transfer_run")
    see = Path(tiny_see(out))
    _act(out, see)
    _act(out / "oracle", see, domains=list(FAMILY.splits["target"]))
    return out


def _cfg(run_dir: Path, **extra: Any) -> TransferConfig:
    data: dict[str, Any] = {
        "act": str(run_dir / "act" / "beta_vae" / "ppo" / "s0"),
        "episodes": 2,
        "n_envs": 2,
        "vec": "dummy",
        "device": "cpu",
    }
    data.update(extra)
    return from_dict(TransferConfig, data)


def test_results_hold_every_domain_floor_and_oracle(run_dir: Path) -> None:
    oracle = run_dir / "oracle" / "act" / "beta_vae" / "ppo" / "s0"
    path = run_transfer(_cfg(run_dir, oracle=str(oracle)))
    assert path == run_dir / "transfer" / "beta_vae" / "ppo" / "s0"
    res = read_json(path / "results.json")
    assert list(res["domains"]) == ALL_DOMAINS
    for split in ("source", "target", "ood"):
        assert res["splits"][split]["domains"] == list(FAMILY.splits[split])
    for name, entry in res["domains"].items():
        assert entry["split"] == FAMILY.split_of(name)
        assert entry["difficulty"] == FAMILY.domain(name).difficulty
        assert len(entry["agent"]["returns"]) == 2
        assert entry["mean"] == pytest.approx(np.mean(entry["agent"]["returns"]))
        assert len(entry["random"]["returns"]) == 2  # the floor, on every domain
        assert entry["random_mean"] == pytest.approx(np.mean(entry["random"]["returns"]))
        # the oracle is a ceiling only where it was trained
        assert ("oracle" in entry) == (entry["split"] == "target")
        # the act folder's 12-step time limit is the evaluation's
        assert max(entry["agent"].get("mean_length"), entry["random"]["mean_length"]) <= 12
    agent = res["policies"]["agent"]
    means = agent["split_means"]
    assert means["source"] == pytest.approx(
        np.mean([res["domains"][d]["mean"] for d in FAMILY.splits["source"]])
    )
    assert agent["gap"] == pytest.approx(means["source"] - means["target"])
    assert agent["ood_gap"] == pytest.approx(means["source"] - means["ood"])
    if abs(means["source"]) > 1e-8:
        assert agent["transfer_ratio"] == pytest.approx(means["target"] / means["source"])
    else:
        assert agent["transfer_ratio"] is None  # a ratio to nothing is undefined, not inf
    assert set(res["policies"]) == {"agent", "random", "oracle"}
    assert set(res["policies"]["oracle"]["split_means"]) == {"target"}
    assert res["oracle"] == str(oracle)
    assert res["vision"] == "beta_vae" and res["mode"] == "frozen" and res["algo"] == "ppo"
    assert (path / DONE).is_file() and (path / "config.yaml").is_file()


def test_same_seed_same_results_in_a_fresh_folder(run_dir: Path, tmp_path: Path) -> None:
    first = read_json(run_transfer(_cfg(run_dir, out=str(tmp_path / "a"))) / "results.json")
    # another folder (no shared cache), another worker count: the same episodes and returns
    second = read_json(run_transfer(_cfg(run_dir, out=str(tmp_path / "b"), n_envs=1)) / "results.json")
    for name in ALL_DOMAINS:
        for role in ("agent", "random"):
            assert first["domains"][name][role]["returns"] == second["domains"][name][role]["returns"]
            assert first["domains"][name][role]["mean_length"] == second["domains"][name][role]["mean_length"]


def test_episodes_are_fixed_by_the_seed_not_the_worker() -> None:
    eps = episodes_for(0, "brick_greenred", 3) + episodes_for(0, "marble_blueyellow", 3)
    assert eps == episodes_for(0, "brick_greenred", 3) + episodes_for(0, "marble_blueyellow", 3)
    assert [e.seed for e in episodes_for(1, "brick_greenred", 3)] != [e.seed for e in eps[:3]]
    with EnvPool() as pool:
        results = []
        for n_envs in (1, 3):
            venv = pool.get("SeekAvoid", ALL_DOMAINS, n_envs, size=32, vec="dummy", max_episode_steps=20)
            act = random_action_fn(7)(eps, int(venv.action_space.n))  # type: ignore[attr-defined]
            seen: list[str] = []

            def on_episode(job: int, ret: float, length: int, seen: list[str] = seen) -> None:
                seen.append(eps[job].domain)

            returns, lengths = run_episodes(venv, eps, act, on_episode)
            assert sorted(seen) == sorted(e.domain for e in eps)
            assert ((lengths >= 1) & (lengths <= 20)).all()
            results.append((returns.tolist(), lengths.tolist()))
        assert results[0] == results[1]


def test_skips_when_done_and_reruns_for_a_retrained_policy(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    path = run_transfer(_cfg(run_dir, out=str(out), splits=["source"]))
    stamp = (path / "results.json").stat().st_mtime_ns
    cache = sorted((out / "transfer" / ".episodes").glob("*.json"))
    assert len(cache) == 2 * len(FAMILY.splits["source"])  # agent + random, per domain
    assert run_transfer(_cfg(run_dir, out=str(out), splits=["source"])) == path
    assert (path / "results.json").stat().st_mtime_ns == stamp  # skipped

    # A retrained policy (new completion marker) is evaluated again; the floor comes from cache.
    act = tmp_path / "copy" / "act" / "beta_vae" / "ppo" / "s0"
    shutil.copytree(run_dir / "act" / "beta_vae" / "ppo" / "s0", act)
    floor_stamps = {p: p.stat().st_mtime_ns for p in cache}
    first = run_transfer(_cfg(run_dir, act=str(act), out=str(out), splits=["source"]))
    before = read_json(first / DONE)["finished_at"]
    done = json.loads((act / DONE).read_text())
    done["finished_at"] = time.time() + 1
    (act / DONE).write_text(json.dumps(done))
    again = run_transfer(_cfg(run_dir, act=str(act), out=str(out), splits=["source"]))
    assert again == first
    assert read_json(again / DONE)["finished_at"] > before  # evaluated again
    for p, t in floor_stamps.items():
        assert p.stat().st_mtime_ns == t


def _leaky_copy(run_dir: Path, tmp_path: Path, where: str, domain: str) -> Path:
    """A copy of the act folder (and its see folder) where one stage's config names `domain`."""
    see = tmp_path / "run" / "see" / "beta_vae"
    act = tmp_path / "run" / "act" / "beta_vae" / "ppo" / "s0"
    shutil.copytree(run_dir / "see" / "beta_vae", see)
    shutil.copytree(run_dir / "act" / "beta_vae" / "ppo" / "s0", act)
    act_cfg = yaml.safe_load((act / "config.yaml").read_text())
    act_cfg["see"] = str(see)
    if where == "act":
        act_cfg["domains"] = [*act_cfg["domains"], domain]
    else:
        see_cfg = yaml.safe_load((see / "config.yaml").read_text())
        leaky = dict(see_cfg, domains=[*see_cfg["domains"], domain])
        if where == "see":
            see_cfg = leaky
        else:  # the vision model is clean but was built on a model (here: its DAE) that saw `domain`
            upstream = tmp_path / "elsewhere" / "see" / "dae"
            upstream.mkdir(parents=True)
            (upstream / "config.yaml").write_text(yaml.safe_dump(dict(leaky, model="dae")))
            see_cfg["dae_path"] = str(upstream / "model.pt")
        (see / "config.yaml").write_text(yaml.safe_dump(see_cfg))
    (act / "config.yaml").write_text(yaml.safe_dump(act_cfg))
    return act


@pytest.mark.parametrize(
    ("where", "split", "what"),
    [
        ("act", "target", "policy"),
        ("act", "ood", "policy"),
        ("see", "target", "vision model"),
        ("upstream", "ood", "vision model"),
    ],
)
def test_refuses_a_policy_or_vision_model_that_saw_a_held_out_domain(
    run_dir: Path, tmp_path: Path, where: str, split: str, what: str
) -> None:
    domain = FAMILY.splits[split][0]
    act = _leaky_copy(run_dir, tmp_path, where, domain)
    with pytest.raises(ConfigError, match=rf"{what} .* saw held-out domain\(s\) {domain} \({split}\)"):
        run_transfer(_cfg(run_dir, act=str(act)))
    assert not (tmp_path / "run" / "transfer").exists()  # refused before anything ran


def test_leak_is_a_cli_error(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    act = _leaky_copy(run_dir, tmp_path, "act", FAMILY.splits["target"][1])
    assert main(["transfer", "--act", str(act), "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "darla: error:" in err and FAMILY.splits["target"][1] in err and "zero-shot" in err


def test_unfinished_or_missing_act_folder_is_an_artifact_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        run_transfer(_cfg(run_dir, act=str(tmp_path / "act" / "nope" / "ppo" / "s0")))
    act = tmp_path / "act" / "beta_vae" / "ppo" / "s0"
    shutil.copytree(run_dir / "act" / "beta_vae" / "ppo" / "s0", act)
    (act / DONE).unlink()
    with pytest.raises(ArtifactError, match="not finished"):
        run_transfer(_cfg(run_dir, act=str(act), out=str(tmp_path)))
    with pytest.raises(ConfigError, match="--act"):
        run_transfer(TransferConfig())


def test_sampled_actions_are_evaluated_next_to_greedy_ones(run_dir: Path, tmp_path: Path) -> None:
    from darla.pipelines.analysis.report import ReportConfig
    from darla.pipelines.analysis.report_runs import load_run
    from darla.pipelines.analysis.report_summary import summarise

    path = run_transfer(_cfg(run_dir, out=str(tmp_path), sampled=True))
    res = read_json(path / "results.json")
    assert set(res["policies"]) == {"agent", "agent_sampled", "random"}
    for entry in res["domains"].values():
        assert len(entry["agent_sampled"]["returns"]) == 2
    # the greedy figures are those of a run without sampled actions (same episodes, own cache keys)
    greedy = read_json(run_transfer(_cfg(run_dir, out=str(tmp_path / "g"))) / "results.json")
    assert res["policies"]["agent"] == greedy["policies"]["agent"]
    # the report shows the sampled evaluation as a method of its own
    runs = load_run(tmp_path)
    assert sorted(r.method for r in runs) == ["beta_vae/frozen/ppo", "beta_vae/frozen/ppo (sampled)"]
    sampled = next(r for r in runs if r.method.endswith("(sampled)"))
    assert sampled.split_mean("source") == res["policies"]["agent_sampled"]["split_means"]["source"]
    assert set(summarise(runs, ReportConfig(run=tmp_path, reps=10))["methods"]) == {r.method for r in runs}


def test_bad_config_values_name_the_choices() -> None:
    with pytest.raises(ConfigError, match="needs deterministic=True"):
        from_dict(TransferConfig, {"sampled": True, "deterministic": False})
    with pytest.raises(ConfigError, match="episodes"):
        from_dict(TransferConfig, {"episodes": 0})
    with pytest.raises(ConfigError, match="Valid choices: source, target, ood"):
        from_dict(TransferConfig, {"splits": ["source", "taget"]})


def test_cli_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "transfer",
            "--act",
            str(run_dir / "act" / "beta_vae" / "ppo" / "s0"),
            "--out",
            str(tmp_path),
            "--episodes",
            "2",
            "--n-envs",
            "1",
            "--splits",
            "source,target",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(result["results"]).is_file()
    assert set(result["returns"]) == {"source", "target"}  # ood was not asked for
    assert set(read_json(result["results"])["domains"]) == set(
        FAMILY.splits["source"] + FAMILY.splits["target"]
    )


@pytest.mark.parametrize("with_out", [True, False])
def test_a_see_folder_given_as_act_is_refused_before_anything_is_written(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], with_out: bool
) -> None:
    see = tmp_path / "exp" / "see" / "beta_vae"
    shutil.copytree(run_dir / "see" / "beta_vae", see)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    out = ["--out", str(tmp_path / "exp")] if with_out else []
    assert main(["transfer", "--act", str(see), *out, "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error:") and str(see) in err and "see folder" in err and "act folder" in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "exp" / "transfer").exists()
