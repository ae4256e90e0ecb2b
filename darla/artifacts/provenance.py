"""Provenance: which domains every stage behind a policy saw, and the zero-shot (leak) check.

A policy's evaluation on a target domain is zero-shot only if nothing behind it saw that domain:
not the policy's own training, not the vision model it reads, not what that model was built on
(a beta_vae_dae's DAE, an iin's base), not the expert a cloned policy learned from (and its own
vision model, and so on up). `check_zero_shot` walks that chain through the typed artifacts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from darla.errors import ArtifactError, ConfigError

from .stages import ActArtifact, SeeArtifact, StageArtifact


def domain_names(values: Sequence[Any], known: set[str]) -> set[str]:
    """The family's domain names among config values (names or specs with a name, nested)."""
    return set(_names(list(values), known))


def _names(value: Any, known: set[str]) -> Iterator[str]:
    if isinstance(value, str):
        if value in known:
            yield value
    elif isinstance(value, Mapping):
        name = value.get("name")
        if isinstance(name, str) and name in known:
            yield name
        for key, item in value.items():
            if key != "name":
                yield from _names(item, known)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _names(item, known)


def lineage(act: ActArtifact) -> list[tuple[str, StageArtifact]]:
    """(what it is to the policy, artifact) for the policy, its experts, their vision models and
    everything those were built on; an unreadable link is an error (the check cannot be made)."""
    chain: list[tuple[str, StageArtifact]] = [("policy", act)]
    seen_paths = {act.path.resolve()}
    policy = act
    while policy.raw.get("expert"):
        try:
            expert = policy.expert
        except ArtifactError as exc:
            raise ArtifactError(
                f"the expert that {policy.path} was cloned from is unreadable ({exc}): "
                "cannot check that it never saw a target domain"
            ) from None
        assert expert is not None
        if expert.path.resolve() in seen_paths:
            break
        seen_paths.add(expert.path.resolve())
        chain.append((f"expert of {act.path}", expert))
        policy = expert
    pending: list[tuple[str, Path]] = []
    for _, artifact in list(chain):
        if isinstance(artifact, ActArtifact) and artifact.raw.get("see"):
            pending.append((f"vision model of {artifact.path}", Path(str(artifact.raw["see"]))))
    while pending:
        what, ref = pending.pop()
        try:
            see = SeeArtifact.read(ref, finished=False)
        except ArtifactError as exc:
            raise ArtifactError(
                f"the {what} ({ref}) is unreadable ({exc}): cannot check that it never saw a target domain"
            ) from None
        if see.path.resolve() in seen_paths:
            continue
        seen_paths.add(see.path.resolve())
        chain.append(("vision model", see))
        pending.extend((f"model {see.path} was built on", up) for up in see.upstream.values())
    return chain


def check_zero_shot(family: str, splits: Mapping[str, Sequence[str]], act: ActArtifact) -> None:
    """Refuse a policy if it, or any stage behind it, saw a target or ood domain of `family` (or was
    trained on another env family)."""
    held_out = {d: s for s in ("target", "ood") for d in splits.get(s, ())}
    known = {d for names in splits.values() for d in names}
    for what, artifact in lineage(act):
        if artifact.env and artifact.env != family:
            raise ConfigError(
                f"the {what} {artifact.path} was trained on env {artifact.env!r}, the policy {act.path} "
                f"on {family!r}"
            )
        leaked = sorted(domain_names(artifact.domains_seen(), known) & set(held_out))
        if leaked:
            names = ", ".join(f"{d} ({held_out[d]})" for d in leaked)
            raise ConfigError(
                f"the {what} {artifact.path} saw held-out domain(s) {names}: its evaluation there would not "
                f"be zero-shot. Train it on source domains only: {', '.join(splits.get('source', ()))}"
            )
