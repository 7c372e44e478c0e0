"""``kinebridge data kine``: generate the Kine data set — episodes planned, executed, recorded, written.

Work is split into **jobs**, each drawn from its own seed ``[seed, job]`` so the same seed gives the same
episodes whatever the number of workers:

* a *coarse* job is one episode of one task in its own scene with the plainest kinematics (the coarse split:
  goals only, broad — stage I of the tokenizer);
* a *kine* job is a **goal group**: one scene (one goal) and ``group_size`` episodes with different
  combinations of kinematic attributes (the kine split — stage II).

A job whose plan leaves the arm's reach draws other attributes (and, after that, another scene). A share
``holdout_share`` of the jobs (by their own seed) is held out for evaluation. Each episode is written as
``episodes/ep_NNNNNN.npz`` (arrays; images included) and ``episodes/ep_NNNNNN.json`` (language, attributes,
predicate labels, goal score, the scene); ``manifest.json`` lists them all with the configuration and the
figures of the run (episodes/min). The format is read by :mod:`kinebridge.export.tokenizer.data`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["KineConfig", "generate", "FORMAT", "EPISODE_FORMAT", "run_job"]

FORMAT = "kinebridge-kine-1"
EPISODE_FORMAT = "kinebridge-kine-episode-1"
TASK_WEIGHTS = {"place": 0.25, "facing": 0.2, "push": 0.2, "drawer": 0.2, "pour": 0.15}


@dataclass
class KineConfig:
    episodes: int = 100
    seed: int = 0
    out: str = "out/kine"
    workers: int = 2
    coarse_share: float = 0.3           # episodes of the coarse split (goals only)
    group_size: int = 4                 # episodes per goal group in the kine split
    holdout_share: float = 0.1          # jobs held out for evaluation
    tasks: tuple = tuple(TASK_WEIGHTS)
    action_hz: float = 10.0
    image_hz: float = 5.0               # images per second (scene + wrist); 0 = none
    image_size: tuple = (128, 96)
    particles: int = 60                 # water spheres of the pour
    model: str = "RM75-B"

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {self.episodes}")
        if not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"--seed must be a non-negative integer, got {self.seed}")
        if not 1 <= self.workers <= 64:
            raise ValueError(f"--workers must be within 1..64, got {self.workers}")
        if not 0.0 <= self.coarse_share <= 1.0 or not 0.0 <= self.holdout_share < 1.0:
            raise ValueError("coarse_share must be within [0, 1] and holdout_share within [0, 1)")
        if self.group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {self.group_size}")
        bad = [t for t in self.tasks if t not in TASK_WEIGHTS]
        if bad or not self.tasks:
            raise ValueError(f"--tasks: unknown {bad}; choose from {list(TASK_WEIGHTS)}")
        if not 0.0 <= self.image_hz <= self.action_hz * 10:
            raise ValueError(f"--image-hz must be within 0..{self.action_hz * 10:g}, got {self.image_hz}")
        w, h = self.image_size
        if not (16 <= w <= 1280 and 16 <= h <= 720):
            raise ValueError(f"--image-size must be within 16x16..1280x720, got {w}x{h}")


def _jobs(cfg: KineConfig) -> list[dict]:
    """The jobs, in order: ids, split, task, hold-out — a pure function of the configuration."""
    n_coarse = int(round(cfg.episodes * cfg.coarse_share))
    jobs, eid, j = [], 0, 0
    weights = np.array([TASK_WEIGHTS[t] for t in cfg.tasks], float)
    weights /= weights.sum()

    def draw(j):
        rng = np.random.default_rng([cfg.seed, j, 7])
        return str(rng.choice(cfg.tasks, p=weights)), bool(rng.uniform() < cfg.holdout_share)

    for _ in range(n_coarse):
        task, hold = draw(j)
        jobs.append({"job": j, "split": "coarse", "task": task, "holdout": hold, "ids": [eid]})
        eid += 1
        j += 1
    while eid < cfg.episodes:
        n = min(cfg.group_size, cfg.episodes - eid)
        task, hold = draw(j)
        jobs.append({"job": j, "split": "kine", "task": task, "holdout": hold, "ids": list(range(eid, eid + n))})
        eid += n
        j += 1
    return jobs


# ------------------------------------------------------------------------------------------ worker
_PLANNER = None


def _init_worker():
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = "1"
    os.environ.setdefault("MUJOCO_GL", "egl")


def _planner(model: str):
    global _PLANNER
    if _PLANNER is None or _PLANNER[0] != model:
        from kinebridge.bench.kine.plan import SegmentPlanner
        _PLANNER = (model, SegmentPlanner(model))
    return _PLANNER[1]


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def run_job(job: dict, cfg: KineConfig) -> list[dict]:
    """Plan, execute and write every episode of ``job``; returns their manifest entries."""
    from kinebridge.bench.kine import tasks as T
    from kinebridge.bench.kine.execute import execute
    from kinebridge.bench.kine.plan import PlanError
    from kinebridge.drivers.world import World
    from kinebridge.drivers.world.scoring import PourMonitor
    from kinebridge.kernels import kine_predicates as kp

    planner = _planner(cfg.model)
    out = Path(cfg.out) / "episodes"
    out.mkdir(parents=True, exist_ok=True)
    coarse = job["split"] == "coarse"
    cpu0 = time.process_time()
    for attempt in range(8):
        rng = np.random.default_rng([cfg.seed, job["job"], attempt])
        scene_seed = int(rng.integers(0, 2 ** 31))
        layout = T.make_layout(job["task"], rng, scene_seed, cfg.image_size, cfg.particles)
        plans, tries = [], 0
        while len(plans) < len(job["ids"]) and tries < 6 * len(job["ids"]):
            tries += 1
            attrs = T.default_attributes(layout, rng) if coarse else \
                T.sample_attributes(layout, rng, exclude=[p[0] for p in plans])
            t0 = time.perf_counter()
            try:
                plan = T.plan_episode(layout, attrs, planner, rng)
            except PlanError:
                continue
            plans.append(({k: v for k, v in attrs.items() if not k.startswith("_")}, attrs, plan,
                          time.perf_counter() - t0))
        if len(plans) == len(job["ids"]):
            break
    else:
        raise RuntimeError(f"job {job['job']} ({job['task']}): no reachable scene in 8 draws")
    entries = []
    ctx = T.predicate_context(layout)
    plan_cpu = (time.process_time() - cpu0) / max(1, len(plans))
    for eid, (attrs, full_attrs, plan, plan_s) in zip(job["ids"], plans):
        t0 = time.perf_counter()
        c0 = time.process_time()
        world = World(layout.scene)
        monitor = PourMonitor(world, layout.info["target"]) if layout.task == "pour" else None
        try:
            res = execute(world, plan, layout, planner.d7, action_hz=cfg.action_hz, image_hz=cfg.image_hz,
                          image_size=cfg.image_size, images=cfg.image_hz > 0, dt=planner.dt, monitor=monitor)
        finally:
            if monitor is not None:
                monitor.close()
        a = res["arrays"]
        ptraj = T.predicate_traj(layout, a["q"], a["grip"], planner.d7)
        pattrs = T.predicate_attributes(layout, full_attrs)
        preds = kp.evaluate(pattrs, ptraj, ctx)
        lang = T.language(layout, full_attrs, coarse)
        q_plan, grip_plan, events = plan.joints()
        name = f"ep_{eid:06d}"
        np.savez_compressed(out / f"{name}.npz", **a)
        meta = {"format": EPISODE_FORMAT, "id": eid, "split": job["split"], "holdout": job["holdout"],
                "task": layout.task, "group": job["job"], "seed": [cfg.seed, job["job"], attempt],
                **lang, "attributes": attrs, "predicate_attributes": pattrs, "predicates": preds,
                "predicates_all": bool(all(preds.values())) if preds else True,
                "goal": res["goal"], "grasp": res["grasp"], "layout": layout.info, "context": ctx,
                "events": [[i * planner.dt, e] for i, e in events], "attach": plan.attach,
                "segments": [[s.name, len(s.q)] for s in plan.segments],
                "n_steps": int(len(a["q"])), "action_hz": cfg.action_hz, "image_hz": cfg.image_hz,
                "n_images": int(len(a.get("image_t", []))), "duration_s": float(len(q_plan) * planner.dt),
                "plan_dt": planner.dt, "model": cfg.model, "d7": planner.d7,
                "scene": json.loads(layout.scene.model_dump_json()),
                "timing": {"plan_s": round(plan_s, 3), "execute_s": round(time.perf_counter() - t0, 3),
                           "cpu_s": round(plan_cpu + time.process_time() - c0, 3)},
                "files": {"arrays": f"{name}.npz"}}
        (out / f"{name}.json").write_text(json.dumps(_jsonable(meta)))
        entries.append({k: _jsonable(meta[k]) for k in ("id", "split", "holdout", "task", "group", "n_steps",
                                                         "predicates_all")}
                       | {"goal_success": bool(res["goal"]["success"]), "file": f"episodes/{name}",
                          "cpu_s": meta["timing"]["cpu_s"],
                          "instruction": lang["instruction"], "coarse_instruction": lang["coarse_instruction"]})
    return entries


def _run_job(args):
    job, cfg = args
    t0 = time.perf_counter()
    return run_job(job, cfg), time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ driver
def generate(cfg: KineConfig, progress: bool = True, log=print) -> dict:
    """Generate the data set ``cfg`` describes into ``cfg.out``; returns the manifest."""
    import multiprocessing as mp

    from tqdm import tqdm

    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    if (root / "manifest.json").exists():
        raise ValueError(f"{root} already holds a data set (manifest.json); choose another --out or remove it")
    jobs = _jobs(cfg)
    _init_worker()
    t0 = time.perf_counter()
    entries, job_s = [], []
    bar = tqdm(total=cfg.episodes, desc="kine episodes", unit="ep", disable=not progress, smoothing=0.05)
    try:
        if cfg.workers == 1:
            it = map(_run_job, [(j, cfg) for j in jobs])
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(cfg.workers, initializer=_init_worker)
            it = pool.imap_unordered(_run_job, [(j, cfg) for j in jobs])
        for ents, s in it:
            entries += ents
            job_s.append(s)
            bar.update(len(ents))
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    entries.sort(key=lambda e: e["id"])
    splits = {}
    for e in entries:
        key = f"{e['split']}{'/holdout' if e['holdout'] else ''}"
        s = splits.setdefault(key, {"episodes": 0, "steps": 0, "goal_success": 0, "predicates_all": 0})
        s["episodes"] += 1
        s["steps"] += e["n_steps"]
        s["goal_success"] += int(e["goal_success"])
        s["predicates_all"] += int(e["predicates_all"])
    manifest = {"format": FORMAT, "config": _jsonable(asdict(cfg)), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "episodes": entries, "splits": splits,
                "layout": {"arrays": "episodes/ep_NNNNNN.npz: t (T,), q (T,7) joint state, tcp/flange (T,7) pose "
                                     "[x,y,z,qw,qx,qy,qz], grip (T,) int8, keypoints (T,K,3) float32 + keypoint_names, "
                                     "action_q (T,7) joint target for t+1/action_hz, action_tcp (T,7), image_scene / "
                                     "image_wrist (N,H,W,3) uint8 + image_t (N,)",
                           "meta": "episodes/ep_NNNNNN.json: instruction, coarse_instruction, reasoning{coarse,fine}, "
                                   "attributes, predicate_attributes, predicates, goal, layout, context, scene"},
                "timing": {"wall_s": round(wall, 1), "episodes_per_min": round(60.0 * len(entries) / wall, 1),
                           "workers": cfg.workers, "job_s_median": round(float(np.median(job_s)), 2) if job_s else None,
                           # CPU seconds of an episode in its worker (plan + execute + write): what the run costs
                           # without other load — a worker per free core does 60 / cpu_s episodes a minute
                           "cpu_s_per_episode": round(float(np.mean([e["cpu_s"] for e in entries])), 3) if entries else None,
                           "episodes_per_cpu_min": round(60.0 / max(1e-9, float(np.mean([e["cpu_s"] for e in entries]))), 1)
                           if entries else None}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"wrote {len(entries)} episodes to {root} in {wall:.0f} s ({manifest['timing']['episodes_per_min']} episodes/min, "
        f"{cfg.workers} workers); " + ", ".join(f"{k}: {v['episodes']} ({v['goal_success']} goals reached, "
                                                 f"{v['predicates_all']} with every predicate)" for k, v in splits.items()))
    return manifest
