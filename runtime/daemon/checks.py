"""Configurations that validate but would misbehave on the robot: refused at start, naming the field.

The pydantic models check each value on its own; these checks look at combinations (a heartbeat
timeout shorter than the heartbeat period kills healthy nodes, a watchdog shorter than the producers'
chunk period starves the arm, …) and at what the configuration points to (a skill that does not exist,
a recorder directory that cannot be written). ``kinebridge run`` runs them before anything starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from kinebridge.runtime.config import ConfigError, RuntimeConfig

__all__ = ["refuse_dangerous"]


def _problems(cfg: RuntimeConfig) -> list[str]:
    out = []
    sv, t, c = cfg.supervisor, cfg.trajectory, cfg.control
    hb_period = 1.0 / sv.heartbeat_hz
    if sv.heartbeat_timeout_s < 3 * hb_period:
        out.append(f"supervisor.heartbeat_timeout_s = {sv.heartbeat_timeout_s:g} s is less than three heartbeat periods "
                   f"({3 * hb_period:g} s at supervisor.heartbeat_hz = {sv.heartbeat_hz:g}): healthy nodes would be "
                   f"killed for one late heartbeat; raise it or the heartbeat rate")
    if sv.start_timeout_s < sv.heartbeat_timeout_s:
        out.append(f"supervisor.start_timeout_s = {sv.start_timeout_s:g} s is shorter than heartbeat_timeout_s")
    kinds = {s.kind for s in cfg.nodes.values() if s.enabled}
    if "trajectory" in kinds:
        chunk_s = t.chunk_len * t.dt
        if chunk_s <= 1.0 / t.publish_hz:
            out.append(f"trajectory.chunk_len × dt = {chunk_s:g} s does not reach the next publication "
                       f"(1 / publish_hz = {1 / t.publish_hz:g} s): the arm would starve between chunks")
        if c.watchdog_s <= 2.0 / t.publish_hz:
            out.append(f"control.watchdog_s = {c.watchdog_s:g} s is within two chunk periods of the trajectory node "
                       f"(publish_hz = {t.publish_hz:g}): one late chunk would stop the motion")
        try:
            from kinebridge.runtime.skills.registry import check_skill_spec
            check_skill_spec(t.skill, "trajectory.skill")
        except ValueError as exc:
            out.append(str(exc))
    rm = cfg.arm.realman
    if 1.0 / c.rate_hz > 0.010 and rm.follow:
        out.append(f"control.rate_hz = {c.rate_hz:g}: RealMan's high-follow pass-through needs a setpoint at least "
                   f"every 10 ms (≥ 100 Hz); raise the rate or set arm.realman.follow = false")
    if "control" not in kinds:
        out.append("nodes: no control node is enabled — nothing would drive the arm (add [nodes.control])")
    if "recorder" in kinds:
        d = Path(cfg.recorder.directory)
        probe = d if d.exists() else next((p for p in d.parents if p.exists()), Path("."))
        if not os.access(probe, os.W_OK):
            out.append(f"recorder.directory {d}: not writable by this user")
    return out


def refuse_dangerous(cfg: RuntimeConfig, source: str = "configuration") -> None:
    """Raise :class:`ConfigError` listing every dangerous combination in ``cfg``."""
    bad = _problems(cfg)
    if bad:
        raise ConfigError(f"{source}: refused — valid, but it would misbehave on the robot:\n  " + "\n  ".join(bad))
