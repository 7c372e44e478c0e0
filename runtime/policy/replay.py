"""Reading a data set's tokens for ``replay-tokens`` (json + numpy; no torch).

``kinebridge train tokenizer`` writes ``<dataset>/tokens/<tokenizer id>/`` (``index.json`` and one
``ep_NNNNNN.npy`` int32 (T, length) per episode: the token sequence of the chunk at each step). The replay
needs that, the episode's observed joints (``q`` of ``episodes/ep_NNNNNN.npz``) for ``q_obs`` and the
tokenizer's id (its manifest) to match the decoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Replay", "load_replay", "default_episode", "episode_start_deg"]


@dataclass
class Replay:
    episode: int
    tokenizer: str
    dt: float
    codes: np.ndarray        # (T, length) int32
    q: np.ndarray            # (T, 7) observed joints


def _manifest(dataset: Path) -> dict:
    mf = dataset / "manifest.json"
    if not mf.is_file():
        raise ValueError(f"policy.dataset {dataset}: no manifest.json — not a Kine data set")
    return json.loads(mf.read_text())


def default_episode(dataset) -> int:
    """The first held-out kine episode (else the first episode)."""
    m = _manifest(Path(dataset))
    eps = [e for e in m["episodes"] if e["split"] == "kine" and e["holdout"]] or m["episodes"]
    if not eps:
        raise ValueError(f"policy.dataset {dataset}: the data set has no episodes")
    return int(eps[0]["id"])


def episode_start_deg(dataset, episode: int | None = None) -> list[float]:
    """The episode's first observed joints in degrees (where the simulated arm should start)."""
    d = Path(dataset)
    eid = default_episode(d) if episode is None else int(episode)
    with np.load(d / "episodes" / f"ep_{eid:06d}.npz", allow_pickle=False) as z:
        return [float(v) for v in np.degrees(z["q"][0])]


def load_replay(dataset, tokenizer_dir, episode: int | None = None) -> Replay:
    if not dataset:
        raise ValueError("policy.dataset: replay-tokens needs a Kine data set with tokens (kinebridge run --policy "
                         "replay-tokens DATASET)")
    d = Path(dataset)
    _manifest(d)
    tm = Path(tokenizer_dir) / "manifest.json"
    if not tm.is_file():
        raise ValueError(f"policy.tokenizer {tokenizer_dir}: no manifest.json")
    tid = json.loads(tm.read_text())["id"]
    tdir = d / "tokens" / tid
    if not (tdir / "index.json").is_file():
        have = sorted(p.name for p in (d / "tokens").glob("*")) if (d / "tokens").is_dir() else []
        raise ValueError(f"{d}: no tokens of tokenizer {tid} (have {have or 'none'}); `kinebridge train tokenizer "
                         f"--data {d}` writes them")
    idx = json.loads((tdir / "index.json").read_text())
    eid = default_episode(d) if episode is None else int(episode)
    f = tdir / f"ep_{eid:06d}.npy"
    if not f.is_file():
        raise ValueError(f"{tdir}: no tokens for episode {eid}")
    codes = np.load(f, allow_pickle=False).astype(np.int32)
    with np.load(d / "episodes" / f"ep_{eid:06d}.npz", allow_pickle=False) as z:
        q = np.asarray(z["q"], np.float64)
    if len(codes) != len(q):
        raise ValueError(f"{f}: {len(codes)} token rows for {len(q)} steps")
    return Replay(eid, tid, float(idx["chunk"]["dt"]), codes, q)


def enable_in_config(data: dict, policy: str, source: str | None = None) -> dict:
    """``kinebridge run --policy POLICY [SOURCE]`` on a config dump ``data``: the decoder and the policy node
    enabled (added when the config has none), the trajectory node off (the decoded chunks drive the arm),
    ``[policy] producer``/``dataset`` set, and the simulated arm started where the replayed episode starts."""
    if policy != "replay-tokens":
        raise ValueError(f"--policy {policy!r}: the policies kinebridge has are ['replay-tokens']")
    pol = data.setdefault("policy", {})
    pol["producer"] = policy
    if source is not None:
        pol["dataset"] = str(source)
    if not pol.get("dataset"):
        raise ValueError("--policy replay-tokens needs the data set: kinebridge run --policy replay-tokens DATASET")
    nodes = data.setdefault("nodes", {})
    for spec in nodes.values():
        if spec.get("kind") == "trajectory":
            spec["enabled"] = False
    for kind in ("decoder", "policy"):
        if not any(s.get("kind") == kind and s.get("enabled", True) for s in nodes.values()):
            nodes[kind if kind not in nodes else f"{kind}_node"] = {"kind": kind, "critical": False, "enabled": True}
    arm = data.setdefault("arm", {})
    if arm.get("simulate", True) and arm.get("sim_initial_deg") is None:
        arm["sim_initial_deg"] = episode_start_deg(pol["dataset"], pol.get("episode"))
    return data
