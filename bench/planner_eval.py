"""Decision accuracy of a planner on ambiguous simulated scenes (VL-MP's ambiguous environment).

    run(n_scenes, seed, planner) -> dict          kinebridge eval planner [--scenes N] [--seed S] [--json]

For each of ``n_scenes`` scenes ``SceneSpec.random(seed + i, ambiguous=True)`` (≥ 3 mugs of one shape
and hue, ≥ 2 boxes of distinct colours) the harness writes instructions **from the scene spec with
its own geometry** (positions seen from the default camera, margins larger than the planner's) with
a known intent:

* *determined* — one intended target: "the mug on the left", "the cup next to the blue box", "the
  mug whose handle points right", "the second mug from the left", "the tallest mug", a two-step
  instruction, and a dialogue (a vague instruction, then the answer "the one on the left");
  generated only when the scene makes the description clear-cut (5 cm / 5 % ahead of the next);
* *undetermined* — no single target: "pour me some water", "a mug", "the cup over there", a colour
  all the mugs share, "the mug next to the box" with two boxes, "the second mug", a handle side
  several mugs share;
* *impossible* — no skill does it ("wipe the table"), or the skill cannot act on it ("the blue box").

Scoring: a determined item is correct when the decision is ``decided`` with the intended target (and,
for two steps, the sub-tasks' targets in order; for the dialogue, an ask first); an undetermined item
is correct when the planner asks — a decision there is a **guess** and counts as a failure; an
impossible item is correct when the decision is ``failed``. The candidates are the world's ground
truth (:func:`kinebridge.runtime.planner.candidates.from_world`), so the figure is the decision
layer's alone, not perception's.

``control_while_planning`` measures the control loop's period error while a planner node waits
seconds on a slow endpoint (a local HTTP stub), against the loop alone.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = ["run", "generate", "score", "print_report", "control_while_planning"]

GEN_MARGIN_M = 0.05         # the generator only says "leftmost" when the next one is 5 cm further
GEN_SIZE_MARGIN = 0.05


def _camera_axes():
    from kinebridge.runtime.planner.candidates import default_camera_pose

    T = default_camera_pose()
    eye = T[:3, 3]
    fwd = np.array([T[0, 2], T[1, 2], 0.0])
    fwd /= np.linalg.norm(fwd)
    return eye, np.array([fwd[1], -fwd[0], 0.0]), fwd


#: other wordings of the positional intents (the paraphrase template draws one per scene)
PARAPHRASES = {
    "left": ("could you pour water in the cup on the far left", "fill up the left-hand mug please",
             "I'd like tea in the mug furthest to the left", "the leftmost cup needs water, pour it"),
    "right": ("pour into the cup on the far right", "fill the right-hand mug", "pour some coffee into the mug "
              "furthest to the right", "top up the rightmost cup"),
    "near": ("pour into the mug nearest to you", "fill the cup in front", "pour water into the front mug",
             "the mug closest to the camera, fill it"),
    "far": ("pour into the cup furthest from the camera", "fill the mug in the back", "pour into the rear cup",
            "pour tea into the mug farthest away from you"),
    "robot": ("pour into the mug closest to the arm", "fill the cup nearest to the robot arm",
              "pour water into the mug next to the robot"),
}
VAGUE_PARAPHRASES = ("could you get me some water", "fill it up", "pour into that one", "give me a drink",
                     "pour water into one of the mugs", "I'm thirsty, pour something")


def _facts(spec) -> dict:
    """The generator's own view of the scene: per object its kind, colour name, lateral/depth seen from
    the camera, distance to the robot, height/volume, handle side."""
    from kinebridge.runtime.planner.candidates import color_name

    eye, right, fwd = _camera_axes()
    out = {}
    for o in spec.objects:
        p = np.array([o.pose.x, o.pose.y, 0.0])
        f = {"kind": "mug" if o.kind == "mug" else "box" if getattr(o, "shape", "box") == "box" else o.kind,
             "color": color_name(o.color), "lat": float((p - eye) @ right), "depth": float((p - eye) @ fwd),
             "robot": float(math.hypot(o.pose.x, o.pose.y)), "xy": p[:2]}
        if o.kind == "mug":
            f["height"], f["volume"] = o.height, o.radius ** 2 * o.height
            yaw = math.radians(o.pose.yaw_deg)
            h = np.array([math.cos(yaw), math.sin(yaw), 0.0])          # the handle is on the mug frame's +x
            a, b = float(h @ right), float(h @ fwd)
            ang = math.degrees(math.atan2(abs(b), abs(a)))            # 0: straight sideways, 90: along the view
            f["handle"] = ("right" if a > 0 else "left") if ang < 35 else None   # clear-cut sides only
            f["handle_any"] = ("right" if a > 0 else "left") if abs(a) >= abs(b) else "fb"
        out[o.name] = f
    return out


def _clear_extreme(items: list[tuple[str, float]], margin: float) -> tuple[str | None, str | None]:
    """(argmin, argmax) of (name, value) pairs, each only when ``margin`` ahead of the next."""
    s = sorted(items, key=lambda kv: kv[1])
    if len(s) < 2:
        return (s[0][0] if s else None), (s[0][0] if s else None)
    lo = s[0][0] if s[1][1] - s[0][1] >= margin else None
    hi = s[-1][0] if s[-1][1] - s[-2][1] >= margin else None
    return lo, hi


def generate(spec) -> list[dict]:
    """Instructions for one scene: {template, turns: [words], expect: decided|ask|failed, target, order}."""
    f = _facts(spec)
    mugs = {k: v for k, v in f.items() if v["kind"] == "mug"}
    boxes = {k: v for k, v in f.items() if v["kind"] == "box"}
    items = []

    def det(template, words, target, order=None, turns=None):
        items.append({"template": template, "turns": turns or [words], "expect": "decided", "target": target,
                      "order": order})

    def und(template, words):
        items.append({"template": template, "turns": [words], "expect": "ask", "target": None, "order": None})

    left, right = _clear_extreme([(k, v["lat"]) for k, v in mugs.items()], GEN_MARGIN_M)
    near, far = _clear_extreme([(k, v["depth"]) for k, v in mugs.items()], GEN_MARGIN_M)
    robot, _ = _clear_extreme([(k, v["robot"]) for k, v in mugs.items()], GEN_MARGIN_M)
    if left:
        det("leftmost", f"pour some water into the {mugs[left]['color']} mug on the left", left)
    if right:
        det("rightmost", "fill the rightmost cup", right)
    if near:
        det("nearest camera", "pour water into the mug closest to the camera", near)
    if far:
        det("farthest camera", "please pour into the mug at the back", far)
    if robot:
        det("nearest robot", "pour into the cup nearest the robot", robot)
    lat = sorted(mugs, key=lambda k: mugs[k]["lat"])
    gaps = np.diff([mugs[k]["lat"] for k in lat])
    if len(lat) == 3 and np.all(gaps >= GEN_MARGIN_M):
        det("ordinal", "pour into the second mug from the right", lat[1])
        det("middle", "pour into the mug in the middle", lat[1])
    if left and right:
        det("two steps", "pour into the leftmost mug, then into the rightmost one", left, order=[left, right])
        det("dialogue", "", left, turns=["pour me some water", "the one on the left"])
    sides = defaultdict(list)
    for k, v in mugs.items():
        sides[v["handle_any"]].append(k)
    for side in ("left", "right"):
        if len(sides[side]) == 1 and mugs[sides[side][0]]["handle"] == side:
            det("handle", f"pour into the mug whose handle points {side}", sides[side][0])
        elif len(sides[side]) >= 2:
            und("shared handle side", f"pour into the mug with the handle on the {side}")
    box_colors = defaultdict(list)
    for k, v in boxes.items():
        box_colors[v["color"]].append(k)
    for col, ks in sorted(box_colors.items()):
        if len(ks) != 1:
            continue
        bxy = boxes[ks[0]]["xy"]
        near_box, _ = _clear_extreme([(k, float(np.hypot(*(v["xy"] - bxy)))) for k, v in mugs.items()], GEN_MARGIN_M)
        if near_box:
            det("next to box", f"fill the cup next to the {col} box", near_box)
            break
    tall, _ = _clear_extreme([(k, -math.log(v["height"])) for k, v in mugs.items()], math.log1p(GEN_SIZE_MARGIN))
    if tall:
        det("tallest", "pour into the tallest mug", tall)
    mug_colors = defaultdict(list)
    for k, v in mugs.items():
        mug_colors[v["color"]].append(k)
    for col, ks in sorted(mug_colors.items()):
        if len(ks) == 1:
            det("unique colour", f"pour into the {col} mug", ks[0])
        else:
            und("shared colour", f"pour into the {col} mug")
    first = sorted(mugs)[0]
    det("by id", f"pour into {first}", first)
    # paraphrases: other wordings of the same intents (PARAPHRASES), one drawn per intent and scene
    rng = np.random.default_rng(abs(hash((spec.seed, "paraphrase"))) % (2 ** 32) if spec.seed is None else spec.seed)
    intents = {"left": left, "right": right, "near": near, "far": far, "robot": robot}
    for intent, target in intents.items():
        if target:
            det("paraphrase", str(rng.choice(PARAPHRASES[intent])), target)
    for words in VAGUE_PARAPHRASES:
        und("vague paraphrase", words)
    und("vague", "pour me some water")
    und("indefinite", "pour water into a mug")
    und("deictic", "pour water into the cup over there")
    und("no skill", "the cup over there")
    und("no direction", "pour into the second mug")
    if len(boxes) >= 2:
        und("ambiguous reference", "pour into the mug next to the box")
    items.append({"template": "unknown skill", "turns": ["wipe the table"], "expect": "failed", "target": None,
                  "order": None})
    if box_colors:
        col = sorted(box_colors)[0]
        items.append({"template": "wrong class", "turns": [f"pour water into the {col} box"], "expect": "failed",
                      "target": None, "order": None})
    return items


def score(item: dict, decisions: list) -> str:
    """correct | guess (decided where it had to ask) | wrong (another target) | missed (asked where it
    could decide) | failed (failed where it could decide or ask) | not failed."""
    d = decisions[-1]
    exp = item["expect"]
    if exp == "decided":
        if len(item["turns"]) > 1 and decisions[0].status != "ask":
            return "guess" if decisions[0].status == "decided" else "failed"
        if d.status == "decided":
            if d.target != item["target"]:
                return "wrong"
            if item["order"]:
                got = list(dict.fromkeys(s.target for s in d.subtasks))
                return "correct" if got == item["order"] else "wrong"
            return "correct"
        return "missed" if d.status == "ask" else "failed"
    if exp == "ask":
        return "correct" if d.status == "ask" else "guess" if d.status == "decided" else "failed"
    return "correct" if d.status == "failed" else "not failed"


def _frame(world, cands):
    from kinebridge.drivers.camera.configs import SyntheticCameraConfig
    from kinebridge.drivers.world.render import Renderer
    from kinebridge.runtime.planner.image import draw_ids

    cam = SyntheticCameraConfig(width=640, height=480)
    intr, T = cam.intrinsics(), cam.extrinsics.pose()
    with Renderer(world, 640, 480) as r:
        rgb, _, _ = r.render(intr, T)
    return draw_ids(rgb, cands, intr, T)


def run(n_scenes: int = 30, seed: int = 0, planner=None, *, image: bool = False, progress=None) -> dict:
    """Accuracy of ``planner`` (default: the LocalPlanner) on ``n_scenes`` ambiguous scenes from ``seed``."""
    from kinebridge.drivers.world import SceneSpec, World
    from kinebridge.runtime.planner.base import Dialogue
    from kinebridge.runtime.planner.candidates import from_world

    if planner is None:
        from kinebridge.runtime.planner.local_planner import LocalPlanner
        planner = LocalPlanner()
    if not 1 <= n_scenes <= 10_000:
        raise ValueError(f"--scenes: expected 1..10000 scenes, got {n_scenes}")
    rows = []
    t0 = time.perf_counter()
    latencies = []
    for i in range(n_scenes):
        spec = SceneSpec.random(seed + i, ambiguous=True, particles=0, tool="none")
        world = World(spec)
        cands = from_world(world)
        frame = _frame(world, cands) if image else None
        for item in generate(spec):
            h = Dialogue(id=f"{seed + i}")
            ds = []
            for words in item["turns"]:
                t = time.perf_counter()
                ds.append(planner.decide(words, cands, image=frame, history=h))
                latencies.append((time.perf_counter() - t) * 1e3)
            rows.append({"scene": seed + i, "template": item["template"], "expect": item["expect"],
                         "target": item["target"], "turns": item["turns"], "outcome": score(item, ds),
                         "status": ds[-1].status, "got": ds[-1].target,
                         "said": ds[-1].question or ds[-1].reason})
        if progress:
            progress(i + 1, n_scenes)
    return _summary(rows, n_scenes, seed, getattr(planner, "name", type(planner).__name__), latencies,
                    time.perf_counter() - t0)


def _summary(rows, n_scenes, seed, name, latencies, elapsed) -> dict:
    def frac(rs):
        return round(sum(r["outcome"] == "correct" for r in rs) / len(rs), 4) if rs else None

    out = {"planner": name, "scenes": n_scenes, "seed": seed, "items": len(rows), "seconds": round(elapsed, 2),
           "decision_ms": {"median": round(float(np.median(latencies)), 3) if latencies else None,
                           "p95": round(float(np.percentile(latencies, 95)), 3) if latencies else None}}
    for exp, key in (("decided", "determined"), ("ask", "undetermined"), ("failed", "impossible")):
        rs = [r for r in rows if r["expect"] == exp]
        counts = defaultdict(int)
        for r in rs:
            counts[r["outcome"]] += 1
        out[key] = {"n": len(rs), "accuracy": frac(rs), **dict(sorted(counts.items()))}
    out["guesses"] = sum(r["outcome"] == "guess" for r in rows)
    out["accuracy"] = frac(rows)
    by = defaultdict(list)
    for r in rows:
        by[r["template"]].append(r)
    out["by_template"] = {k: {"expect": v[0]["expect"], "n": len(v), "accuracy": frac(v)} for k, v in sorted(by.items())}
    out["mistakes"] = [r for r in rows if r["outcome"] != "correct"][:20]
    return out


def print_report(r: dict, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"planner {r['planner']}: {r['items']} instructions on {r['scenes']} ambiguous scenes (seeds {r['seed']}.."
      f"{r['seed'] + r['scenes'] - 1}), {r['seconds']} s, decision median {r['decision_ms']['median']} ms")
    for key, what in (("determined", "decided the intended target"), ("undetermined", "asked"),
                      ("impossible", "failed with the reason")):
        s = r[key]
        extra = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("n", "accuracy", "correct"))
        p(f"  {key:<13} {s['n']:>4}  {what}: {100 * (s['accuracy'] or 0):5.1f} %{'  (' + extra + ')' if extra else ''}")
    p(f"  guesses (a decision where it had to ask): {r['guesses']}; overall {100 * (r['accuracy'] or 0):.1f} %")
    for k, v in r["by_template"].items():
        p(f"    {k:<20} {v['expect']:<8} n={v['n']:<4} {100 * (v['accuracy'] or 0):5.1f} %")
    for m in r["mistakes"][:8]:
        p(f"  ✗ scene {m['scene']} {m['template']}: {m['turns']} → {m['status']} {m['got'] or ''} "
          f"(want {m['expect']} {m['target'] or ''}): {str(m['said'])[:120]}")


# ------------------------------------------------------------------- control loop while planning
def control_while_planning(seconds: float = 20.0, delay_s: float = 3.0, rate: float = 200.0,
                           workdir: Path | None = None) -> dict:
    """The control node's period error (µs) alone and with a planner node deciding instruction after
    instruction on an endpoint that takes ``delay_s`` per reply (a local HTTP stub), ``seconds`` each."""
    import os
    import tempfile
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.config import RuntimeConfig, load_config
    from kinebridge.runtime.planner.base import Decision
    from kinebridge.runtime.planner.openai_planner import GIReply
    from kinebridge.runtime.supervisor.launch import launch

    gi = GIReply(status="ok", skill="pour", target_class="mug", target_description="the left mug",
                 instruction="pour(target=mug: the left mug)", question=None, reason="r").model_dump_json()
    di = Decision.ask("Which mug?", "slow stub").model_dump_json()

    class Slow(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            time.sleep(delay_s)
            name = body.get("response_format", {}).get("json_schema", {}).get("name")
            content = gi if name == "GIReply" else di
            data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "slow",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    os.environ.setdefault("KINEBRIDGE_SLOW_STUB_KEY", "EMPTY")
    work = Path(workdir or tempfile.mkdtemp(prefix="kb-planner-ctl-"))
    out = {"rate_hz": rate, "seconds": seconds, "endpoint_delay_s": delay_s}
    objects = [{"id": f"mug{i}", "class": "mug", "keypoints": {"K_p1": [0.45, y, 0.1]}, "position": [0.45, y, 0.0]}
               for i, y in enumerate((-0.2, 0.0, 0.2))]
    try:
        for cond in ("alone", "planner"):
            data = load_config(None).model_dump()
            data["bus"]["ipc_dir"] = str(work / cond / "bus")
            data["control"]["rate_hz"] = float(rate)
            data["nodes"] = {"control": data["nodes"]["control"]}
            if cond == "planner":
                data["nodes"]["planner"] = {}
                data["planner"].update(kind="openai", base_url=f"http://127.0.0.1:{httpd.server_port}/v1",
                                       model="slow", api_key_env="KINEBRIDGE_SLOW_STUB_KEY", timeout_s=30.0,
                                       retries=0, image=False)
            cfg = RuntimeConfig.model_validate(data)
            rt = launch(cfg, work / cond / "run", log=lambda s: None,
                        listen=(M.ControlTiming.TOPIC, M.Decision.TOPIC, M.Heartbeat.TOPIC))
            sup = rt.supervisor
            late, decisions, beats, busy, reasons = [], [], [], 0.0, {}
            try:
                end = time.monotonic() + seconds
                next_ins = time.monotonic()
                while time.monotonic() < end:
                    if cond == "planner" and time.monotonic() >= next_ins:
                        sup.pub.publish(M.Keypoints.TOPIC, M.Keypoints(objects=objects).header())
                        sup.send(M.Instruction(text="pour into the left mug"))
                        next_ins = time.monotonic() + 2.0
                    sup.poll(20)
                    for m in sup.messages:
                        if m.topic == M.ControlTiming.TOPIC:
                            late.append(m.arrays["lateness_ns"] / 1e3)
                        elif m.topic == M.Decision.TOPIC:
                            decisions.append(m.body.latency_ms)
                            reasons[m.body.status] = (m.body.reason or m.body.question or "")[:200]
                    sup.messages.clear()
                    node = sup.nodes.get("planner")
                    if node is not None and node.last_heartbeat_s is not None:
                        beats.append(time.monotonic() - node.last_heartbeat_s)       # heartbeat age now
                        busy = max(busy, (node.detail.get("planner") or {}).get("busy_s") or 0.0)
            finally:
                rt.shutdown()
            lat = np.concatenate(late) if late else np.zeros(0)
            res = {"ticks": int(lat.size), "period_error_us": {
                "p50": round(float(np.percentile(lat, 50)), 1), "p99": round(float(np.percentile(lat, 99)), 1),
                "max": round(float(lat.max()), 1)} if lat.size else None, "misses_over_1ms": int(np.sum(lat > 1000))}
            if cond == "planner":
                res["decisions"] = len(decisions)
                res["last_reason_by_status"] = reasons
                res["decision_latency_ms_median"] = round(float(np.median(decisions)), 1) if decisions else None
                res["planner_heartbeat_age_max_s"] = round(float(np.max(beats)), 3) if beats else None
                res["planner_busy_s_max"] = busy
            out[cond] = res
    finally:
        httpd.shutdown()
    return out


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m kinebridge.bench.planner_eval", description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", action="store_true", help="measure the control loop while a slow planner runs")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    r = control_while_planning(a.seconds, a.delay) if a.control else run(a.scenes, a.seed)
    if a.json or a.control:
        print(json.dumps(r, indent=1, default=str))
    else:
        print_report(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
