"""Starting a runtime: the simulated arm (if configured), the supervisor, the nodes phase by phase.

``kinebridge run`` and ``kinebridge bench runtime`` start the same way, through :func:`launch`:

1. with ``[arm] simulate = true``, spawn the simulated RealMan controller for the configured arm
   model (and its start posture) on free ports, and point ``[arm.realman]`` at it;
2. start the supervisor, then the nodes of start phase 0 (the control node — it connects and starts
   streaming — and the recorder, which records the start; :mod:`~kinebridge.runtime.supervisor.kinds`);
3. once the control node streams, the nodes of phase 1 (the producers, which plan against the
   arm's state), and wait until every node is ready.

:class:`Launched` holds the running pieces and the start-up times; ``shutdown`` stops them in the
kinds' stop order and then the simulator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.config import RuntimeConfig
from kinebridge.runtime.supervisor.kinds import NODE_KINDS, START_ONCE_STREAMING, START_WITH_ARM

__all__ = ["Launched", "launch", "start_simulated_arm"]


@dataclass
class Launched:
    cfg: RuntimeConfig                 # the config the nodes run with (pointing at the simulator, if any)
    supervisor: object
    sim: object | None = None
    t_start: float = 0.0
    timings: dict = field(default_factory=dict)   # ready_to_stream_s, all_nodes_ready_s (from t_start)

    def shutdown(self) -> None:
        try:
            self.supervisor.shutdown()
        finally:
            if self.sim is not None:
                self.sim.terminate()
                self.sim = None


def start_simulated_arm(cfg: RuntimeConfig, log=print, should_stop=None):
    """Spawn the simulated controller ``cfg.arm`` describes; returns (cfg pointing at it, the process).
    Its first start on a fresh machine compiles kernels (tens of seconds on a loaded 2-core box): the wait
    covers that and says so."""
    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.sim.controller import spawn_sim

    udp = free_udp_port()
    sim = spawn_sim(host="127.0.0.1", port=0, push_port=udp, model=cfg.arm.model,
                    initial_joints_deg=cfg.arm.sim_initial_deg, timeout=cfg.supervisor.start_timeout_s,
                    should_stop=should_stop, progress=log)
    data = cfg.model_dump()
    data["arm"]["realman"].update(ip="127.0.0.1", port=sim.port, udp_port=udp)
    log(f"simulated RealMan controller ({cfg.arm.model}) on 127.0.0.1:{sim.port}")
    return RuntimeConfig.model_validate(data), sim


def launch(cfg: RuntimeConfig, run_dir: str | Path, *, listen=(M.Heartbeat.TOPIC,), log=print, env: dict | None = None,
           wait: bool = True, t_start: float | None = None, should_stop=None) -> Launched:
    """Start the runtime ``cfg`` describes with its logs under ``run_dir``; see the module docstring.

    ``wait``: block until every node is ready (else return once phase 0 streams). ``should_stop()``
    (a SIGTERM flag) ends the start-up at once with :class:`~kinebridge.runtime.supervisor.supervisor.Interrupted`;
    every few seconds a line says which node is still setting up and what it is doing. On any failure
    everything started so far is stopped before the error propagates."""
    from kinebridge.runtime.supervisor.supervisor import Supervisor

    t0 = time.monotonic() if t_start is None else t_start
    sim = None
    sup = None
    try:
        if cfg.arm.simulate:
            cfg, sim = start_simulated_arm(cfg, log, should_stop)
            if cfg.supervisor.latch_file is None:     # a fresh simulated arm each start: its latch lives with the run
                data = cfg.model_dump()
                data["supervisor"]["latch_file"] = str(Path(run_dir) / "latched")
                cfg = RuntimeConfig.model_validate(data)
        sup = Supervisor(cfg, run_dir, listen=listen, log=log, env=env)
        out = Launched(cfg, sup, sim, t0)
        phase = {n: NODE_KINDS[cfg.nodes[n].kind].start_phase for n in sup.nodes}
        first = [n for n in sup.nodes if phase[n] == START_WITH_ARM]
        sup.start(first)
        control = [n for n in first if cfg.nodes[n].kind == "control"]
        if control:
            sup.wait_ready(control, statuses=("streaming",), should_stop=should_stop, progress=log)
            out.timings["ready_to_stream_s"] = time.monotonic() - t0
            log(f"streaming {out.timings['ready_to_stream_s']:.2f} s after start "
                f"({sup.status()[control[0]].get('realtime', '')})")
        else:
            log("no control node configured")
        sup.start([n for n in sup.nodes if phase[n] == START_ONCE_STREAMING])
        if wait:
            sup.wait_ready(should_stop=should_stop, progress=log)
            out.timings["all_nodes_ready_s"] = time.monotonic() - t0
        return out
    except BaseException:
        if sup is not None:
            sup.shutdown()
        if sim is not None:
            sim.terminate()
        raise
