"""Commands against a running daemon: ``kinebridge task|status|stop|estop|clear``.

They find the runtime from the bus directory (``--ipc-dir``, or the one ``--config`` names, or the
default) — the running runtime wrote where it listens into ``<ipc_dir>/runtime.lock``:

* ``task`` publishes a task through the ingress (a validated, authorised producer like any other) and,
  with ``--wait``, follows it on the trajectory node's topics until it ends: exit 0 only if it completed;
  ``task --instruction TEXT`` publishes ``planner/instruction`` instead, and ``--wait`` follows its
  decision and every sub-task (``bridge/subtask``) until they have ended;
* ``status`` asks the supervisor (nodes, restarts, real-time grants, link, controller errors, current
  task, latched/failed): exit 0 only when healthy, so monitoring can use the exit code;
* ``stop`` (decelerate and hold), ``estop`` (the controller's stop, latched) and ``clear`` (acknowledge an
  e-stop, a hold or a critical node's death, and resume) go to the supervisor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from kinebridge.runtime.cli.args import floats

EXIT_UNHEALTHY = 1
EXIT_NO_RUNTIME = 3


def _where(sub):
    sub.add_argument("--ipc-dir", default=None, help="bus directory of the runtime (default: the one --config names, "
                                                    "else the default bus directory)")
    sub.add_argument("--config", type=Path, default=None, help="the runtime's TOML (to find its bus directory)")
    sub.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the runtime's answer")


def _ipc_dir(args) -> str:
    if args.ipc_dir:
        return args.ipc_dir
    from kinebridge.runtime.config import load_config
    return load_config(args.config).bus.ipc_dir


def _info(args) -> dict:
    from kinebridge.runtime.ingress.client import runtime_info
    return runtime_info(_ipc_dir(args))


def request(info: dict, cmd: str, timeout_s: float = 3.0, **args) -> dict:
    """One command to the supervisor's command socket; a clear error when it does not answer."""
    import ormsgpack
    import zmq

    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(info["rpc"])
        s.send(ormsgpack.packb({"cmd": cmd, **args}))
        if not s.poll(int(timeout_s * 1e3)):
            raise TimeoutError(f"the kinebridge runtime (pid {info.get('pid')}) did not answer {cmd!r} within "
                               f"{timeout_s:g} s on {info['rpc']}")
        reply = ormsgpack.unpackb(s.recv())
    finally:
        s.close()
    if not reply.get("ok"):
        raise RuntimeError(f"{cmd}: {reply.get('error', 'refused')}")
    return reply


# --------------------------------------------------------------------------------------- task
def add_task(sub):
    ta = sub.add_parser(
        "task", help="send a task to a running daemon (optionally wait for it to end)",
        description=("Publish a task through the running runtime's ingress: the pour skill's cup (--cup), or any "
                     "skill's goal frame (--goal), optionally the start frame (--start). With --wait, follow it until "
                     "the trajectory node reports it done (exit 0) or failed (exit 1, with the reason)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ta.add_argument("--cup", default=None, help="x,y,z (m, base frame),yaw (deg) of the cup (the pour skill)")
    ta.add_argument("--goal", default=None, help="x,y,z,qw,qx,qy,qz goal frame (m)")
    ta.add_argument("--start", default=None, help="x,y,z,qw,qx,qy,qz start frame (default: the arm's pose)")
    ta.add_argument("--skill", default=None, help="skill name or skill file (default: the daemon's trajectory.skill)")
    ta.add_argument("--instruction", default=None, metavar="TEXT",
                    help="an instruction in words for the daemon's planner (planner/instruction) instead of a task; "
                         "with --wait, follow its decision and every sub-task (bridge/subtask) until they end")
    ta.add_argument("--dialogue", default=None, help="--instruction: the dialogue id (answer a planner's question "
                                                     "in the dialogue that asked it)")
    ta.add_argument("--wait", action="store_true", help="wait until the task ends; exit 0 only if it completed")
    ta.add_argument("--wait-timeout", type=float, default=120.0, help="give up waiting after this many seconds")
    ta.add_argument("--json", action="store_true", help="print the outcome as JSON")
    _where(ta)
    ta.set_defaults(func=_run_task)


def _run_task(args) -> int:
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.ingress.client import IngressProducer

    if args.instruction is not None:
        if args.cup is not None or args.goal is not None:
            raise ValueError("give either --instruction (the planner decides) or a task (--cup/--goal), not both")
        return _run_instruction(args)
    if args.cup is None and args.goal is None:
        raise ValueError("give the task: --cup x,y,z,yaw (pour), --goal x,y,z,qw,qx,qy,qz or --instruction TEXT")
    params = {"cup": list(floats(args.cup, 4, "--cup"))} if args.cup is not None else None
    goal = list(floats(args.goal, 7, "--goal")) if args.goal is not None else None
    start = list(floats(args.start, 7, "--start")) if args.start is not None else None
    task = M.Task(skill=args.skill or ("pour" if params else None), params=params, goal=goal, start=start,
                  task_id=uuid.uuid4().hex[:12])
    info = _info(args)
    sub = None
    if args.wait:       # subscribe before sending, so the end of a short task is not missed
        eps = [ep for ep, name in info.get("endpoints", {}).items() if name not in ("supervisor",)]
        sub = Subscriber(eps, (M.TaskDone.TOPIC, M.TaskError.TOPIC, M.PlanMsg.TOPIC), name="kinebridge task")
        time.sleep(0.2)
    prod = IngressProducer(info["ingress"], "kinebridge-task")
    try:
        if not prod.wait_connected(args.timeout):
            raise TimeoutError(f"the runtime's ingress ({info['ingress']}) is not accepting connections")
        sent = prod.send(task)
        out = {"task_id": task.task_id, "sent_ns": sent.stamp_ns}
        if sub is None:
            print(json.dumps(out) if args.json else f"task {task.task_id} sent")
            return 0
        end = time.monotonic() + args.wait_timeout
        while time.monotonic() < end:
            m = sub.recv(200)
            if m is None or m.body.task_id != task.task_id:
                continue
            if m.topic == M.PlanMsg.TOPIC:
                out.setdefault("plan", {"kind": m.body.kind, "samples": m.body.samples,
                                        "duration_s": round(m.body.dt * (m.body.samples - 1), 3)})
                continue
            if m.topic == M.TaskDone.TOPIC:
                out["completed"] = True
                print(json.dumps(out) if args.json else f"task {task.task_id} completed")
                return 0
            out.update(completed=False, error=m.body.reason)
            print(json.dumps(out) if args.json else f"task {task.task_id} failed: {m.body.reason}", file=sys.stderr)
            return 1
        out.update(completed=False, error=f"no end within {args.wait_timeout:g} s")
        print(json.dumps(out) if args.json else f"task {task.task_id}: {out['error']}", file=sys.stderr)
        return 1
    finally:
        prod.close()
        if sub is not None:
            sub.close()


def _run_instruction(args) -> int:
    """``kinebridge task --instruction``: planner/instruction through the ingress; --wait follows the decision
    (planner/decision) and the sub-tasks (bridge/subtask) until every one has ended — exit 0 only if all
    were done (1: asked, failed, or a sub-task failed)."""
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.ingress.client import IngressProducer

    body = M.Instruction(text=args.instruction, dialogue_id=args.dialogue or "cli-" + uuid.uuid4().hex[:8])
    info = _info(args)
    sub = None
    if args.wait:
        eps = [ep for ep, name in info.get("endpoints", {}).items() if name not in ("supervisor",)]
        sub = Subscriber(eps, (M.Decision.TOPIC, M.SubtaskReport.TOPIC), name="kinebridge task")
        time.sleep(0.2)
    prod = IngressProducer(info["ingress"], "kinebridge-task")
    out: dict = {"instruction": body.text, "dialogue_id": body.dialogue_id}

    def say(text: str, err: bool = False) -> None:
        if not args.json:
            print(text, file=sys.stderr if err else sys.stdout)
    try:
        if not prod.wait_connected(args.timeout):
            raise TimeoutError(f"the runtime's ingress ({info['ingress']}) is not accepting connections")
        out["sent_ns"] = prod.send(body).stamp_ns
        if sub is None:
            print(json.dumps(out) if args.json else f"instruction sent (dialogue {body.dialogue_id})")
            return 0
        end = time.monotonic() + args.wait_timeout
        decision, reports = None, {}
        while time.monotonic() < end:
            m = sub.recv(200)
            if m is None or m.body.dialogue_id != body.dialogue_id:
                continue
            if m.topic == M.Decision.TOPIC and decision is None:
                decision = m
                b = m.body
                out["decision"] = {"status": b.status, "skill": b.skill, "target": b.target, "question": b.question,
                                   "reason": b.reason, "planner": b.planner, "latency_ms": b.latency_ms,
                                   "subtasks": len(b.subtasks)}
                say(f"decision: {b.status} " + (f"{b.skill} → {b.target} ({len(b.subtasks)} sub-task(s))"
                                                if b.status == "decided" else (b.question or b.reason or "")))
                if b.status != "decided":
                    out["completed"] = False
                    if args.json:
                        print(json.dumps(out))
                    return 1
            elif m.topic == M.SubtaskReport.TOPIC and decision is not None and \
                    any(d.stamp_ns == decision.stamp.stamp_ns for d in m.derived):
                r = m.body
                reports[r.index] = {"index": r.index, "skill": r.skill, "target": r.target, "status": r.status,
                                    "reason": r.reason, "task_id": r.task_id, "keypoints_source": r.keypoints_source}
                say(f"sub-task {r.index + 1}/{r.count} {r.status}: {r.skill} on {r.target}"
                    + (f" — {r.reason}" if r.reason else ""), err=r.status == "failed")
                if len(reports) == r.count and all(x["status"] in ("done", "failed", "skipped")
                                                   for x in reports.values()):
                    out["subtasks"] = [reports[k] for k in sorted(reports)]
                    out["completed"] = all(x["status"] == "done" for x in out["subtasks"])
                    if args.json:
                        print(json.dumps(out))
                    return 0 if out["completed"] else 1
        out.update(completed=False, subtasks=[reports[k] for k in sorted(reports)],
                   error=f"no end within {args.wait_timeout:g} s")
        print(json.dumps(out) if args.json else f"instruction: {out['error']}", file=sys.stderr)
        return 1
    finally:
        prod.close()
        if sub is not None:
            sub.close()


# ------------------------------------------------------------------------------------- status
def add_status(sub):
    st = sub.add_parser(
        "status", help="the running daemon's health; exit 0 only when healthy",
        description=("Ask the running runtime's supervisor: every node (status, restarts, heartbeat age), the control "
                     "node's real-time grants, the link to the arm, controller errors, the current task, and whether "
                     "the arm is held (e-stop, hold, a critical node's death). Exit 0 only when healthy — for "
                     f"monitoring; {EXIT_UNHEALTHY} when not, {EXIT_NO_RUNTIME} when no runtime runs there."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    st.add_argument("--json", action="store_true", help="print the whole report as JSON")
    _where(st)
    st.set_defaults(func=_run_status)


def _run_status(args) -> int:
    from kinebridge.runtime.bus.sockets import BusError
    try:
        info = _info(args)
    except BusError as exc:
        print(f"kinebridge: {exc}", file=sys.stderr)
        return EXIT_NO_RUNTIME
    r = request(info, "status", args.timeout)
    if args.json:
        print(json.dumps(r, indent=2, default=str))
    else:
        _print_status(r, info)
    return 0 if r["healthy"] else EXIT_UNHEALTHY


def _print_status(r: dict, info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"kinebridge (pid {r['pid']}) — {'healthy' if r['healthy'] else 'NOT healthy'}",
              title_justify="left")
    for c in ("node", "kind", "status", "restarts", "heartbeat", "detail"):
        t.add_column(c)
    for name, n in r["nodes"].items():
        age = n.get("heartbeat_age_s")
        detail = n.get("latched") or n.get("error") or n.get("link") or ""
        t.add_row(name, n.get("kind", ""), n["status"], str(n["restarts"]), "—" if age is None else f"{age:.2f} s",
                  str(detail))
    Console().print(t)
    for k in ("failed", "latched", "link", "realtime", "task"):
        if r.get(k):
            print(f"{k}: {r[k]}")
    if r.get("controller_errors"):
        print(f"controller errors: {r['controller_errors']}")
    if r.get("latched") or r.get("failed"):
        print("the arm is held still; `kinebridge clear` acknowledges and resumes")


# ------------------------------------------------------------------------------ stop/estop/clear
def _command_parser(sub, name, help_, description, cmd):
    p = sub.add_parser(name, help=help_, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--reason", default="operator", help="recorded with the command (the event log, the latch)")
    _where(p)
    p.set_defaults(func=lambda args: _run_command(args, cmd))


def add_commands(sub):
    _command_parser(sub, "stop", "decelerate the arm to rest and hold it",
                    "The control node decelerates to rest at the acceleration limit and holds there; chunks are refused "
                    "until `kinebridge clear`.", "stop")
    _command_parser(sub, "estop", "stop the arm now (the controller's stop), latched",
                    "E-stop: the controller is commanded to stop at once; the control node latches and refuses every "
                    "chunk, also across restarts of the daemon, until `kinebridge clear`.", "estop")
    _command_parser(sub, "clear", "acknowledge an e-stop, a hold or a failure and resume",
                    "Clear the latch (an e-stop, `kinebridge stop`, or a critical node's death: then the nodes are "
                    "restarted) and resume streaming from where the arm is.", "clear")


def _run_command(args, cmd: str) -> int:
    info = _info(args)
    r = request(info, cmd, args.timeout, reason=args.reason)
    print(f"{cmd}: {r.get('done', 'ok')}")
    return 0


def add(sub):
    add_task(sub)
    add_status(sub)
    add_commands(sub)
