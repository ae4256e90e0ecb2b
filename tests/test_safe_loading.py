"""Nothing darla loads from a run folder can execute code: policies, checkpoints, replay buffers.

Each crafted file carries a pickled payload that, if unpickled, would create a marker file. Loading
must either refuse the file with a clear error or never read the part that holds the payload; the
marker must never appear.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import torch
from conftest import tiny_see
from test_act_pipeline import act_config
from test_act_resume import config, kill_act_mid_rollout

from darla.agents import load_agent
from darla.artifacts import read_json
from darla.cli import main
from darla.errors import ArtifactError
from darla.pipelines.stages.act import run_act


class Payload:
    """Unpickling this runs a shell command that creates `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def act_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("safe")
    see = Path(tiny_see(root))
    return run_act(act_config(root, see, "ppo"))


def rewrite_member(zip_path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[name] = data
    with zipfile.ZipFile(zip_path, "w") as zf:
        for n, content in members.items():
            zf.writestr(n, content)


def copy_act(act_folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run" / "act" / "beta_vae" / "ppo" / "s0"
    shutil.copytree(act_folder, target)
    return target


def test_a_pickled_payload_in_the_policy_weights_is_refused(act_folder: Path, tmp_path: Path) -> None:
    folder = copy_act(act_folder, tmp_path)
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"mlp_extractor.weight": Payload(marker)}, buf)
    rewrite_member(folder / "policy.zip", "policy.pth", buf.getvalue())
    with pytest.raises(ArtifactError, match=r"refusing .*policy.pth.*could run code"):
        load_agent(folder)
    assert not marker.exists()


def test_a_pickled_payload_in_sb3s_data_is_never_read(act_folder: Path, tmp_path: Path) -> None:
    """SB3's loader would unpickle `:serialized:` entries of `data`; darla reads only plain fields."""
    folder = copy_act(act_folder, tmp_path)
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(folder / "policy.zip") as zf:
        data = json.loads(zf.read("data"))
    evil = base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()
    for key in ("policy_class", "observation_space", "action_space", "lr_schedule"):
        data[key] = {**(data.get(key) or {}), ":serialized:": evil}
    rewrite_member(folder / "policy.zip", "data", json.dumps(data).encode())
    agent = load_agent(folder)
    assert agent.predict(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2,)
    assert not marker.exists()


def test_the_transfer_command_refuses_a_crafted_or_broken_policy(
    act_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_act(act_folder, tmp_path)
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save(Payload(marker), buf)
    rewrite_member(folder / "policy.zip", "policy.pth", buf.getvalue())
    assert main(["transfer", "--act", str(folder), "--episodes", "1", "--n-envs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("darla: error: refusing") and "weights_only=False" not in err
    assert not marker.exists()
    (folder / "policy.zip").write_bytes(b"PK\x03\x04 truncated")
    assert main(["transfer", "--act", str(folder), "--episodes", "1", "--n-envs", "1"]) == 2
    assert "truncated or not a zip file" in capsys.readouterr().err


def _killed_run(see: Path, out: Path, algo: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = kill_act_mid_rollout(config(out, see, algo), monkeypatch)
    return folder / read_json(folder / "checkpoint.json")["state"]


def test_a_crafted_checkpoint_and_replay_buffer_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    see = Path(tiny_see(tmp_path / "see_run"))
    marker = tmp_path / "pwned"
    state = _killed_run(see, tmp_path / "a", "ppo", monkeypatch)
    torch.save({"params": Payload(marker)}, state / "tensors.pth")
    with pytest.raises(ArtifactError, match=r"refusing .*tensors.pth"):
        run_act(config(tmp_path / "a", see, "ppo"))
    assert not marker.exists()

    state = _killed_run(see, tmp_path / "b", "dqn", monkeypatch)
    assert (state / "buffer.npz").is_file()
    with open(state / "buffer.npz", "wb") as fh:
        np.savez(fh, observations=np.array([Payload(marker)], dtype=object))
    with pytest.raises(ArtifactError, match=r"refusing .*buffer.npz.*allow_pickle"):
        run_act(config(tmp_path / "b", see, "dqn"))
    assert not marker.exists()
