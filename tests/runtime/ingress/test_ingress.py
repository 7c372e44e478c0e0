"""The ingress node: outside producers in — validated, authorised per topic, rate-limited, re-published
with their own stamp in `derived`; nothing a producer sends can crash it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import Subscriber
from kinebridge.runtime.config import RuntimeConfig, load_config
from kinebridge.runtime.ingress.client import IngressProducer
from kinebridge.runtime.node import node_class


def _ingress(tmp_path, **ingress):
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(tmp_path / "bus")
    data["nodes"] = {"ingress": {}}
    data["ingress"].update(ingress)
    cfg = RuntimeConfig.model_validate(data)
    node = node_class("ingress")("ingress", cfg)
    th = threading.Thread(target=node.run, daemon=True)
    th.start()
    end = time.monotonic() + 10
    while node.status != "ready" and time.monotonic() < end:
        time.sleep(0.01)
    sub = Subscriber([cfg.endpoint("ingress")], (M.Task.TOPIC, M.Chunk.TOPIC, M.EStop.TOPIC))
    prod = IngressProducer(cfg.ingress_endpoint(), "outside")
    assert prod.wait_connected(3.0)
    time.sleep(0.2)
    return cfg, node, th, sub, prod


def _stop(node, th, sub, prod):
    prod.close()
    sub.close()
    node.stop()
    th.join(5)


def test_a_valid_task_is_republished_with_the_producers_stamp(tmp_path):
    cfg, node, th, sub, prod = _ingress(tmp_path)
    try:
        sent = prod.send(M.Task(skill="pour", params={"cup": [0.45, 0.18, 0.08, 20.0]}, task_id="t1"))
        m = sub.recv(3000)
        assert m is not None and m.topic == M.Task.TOPIC and m.body.task_id == "t1"
        assert m.stamp.src == "ingress" and m.derived[0] == sent          # traced to the producer
        q = np.zeros((5, 7))
        prod.send(M.Chunk(t0=1.0, dt=0.01), {"q": q})
        m = sub.recv(3000)
        assert m.topic == M.Chunk.TOPIC and np.array_equal(m.arrays["q"], q)
    finally:
        _stop(node, th, sub, prod)


def test_unauthorised_invalid_and_garbage_messages_are_dropped_and_counted(tmp_path):
    cfg, node, th, sub, prod = _ingress(tmp_path, local_topics=[M.Task.TOPIC])
    try:
        prod.send(M.Chunk(t0=1.0, dt=0.01), {"q": np.zeros((5, 7))})            # not a right of local producers
        prod.publish(M.Task.TOPIC, {"goal": [1.0, 2.0, 3.0]})                     # invalid: 3 numbers, not 7
        prod.sock.send_multipart([b"task", b"\xc1 not msgpack"])                   # garbage
        prod.sock.send_multipart([b"?"])                                           # one frame
        prod.send(M.Task(skill="pour", params={"cup": [0.4, 0.1, 0.1, 0.0]}, task_id="ok"))
        m = sub.recv(3000)
        assert m.topic == M.Task.TOPIC and m.body.task_id == "ok" and sub.recv(200) is None
        time.sleep(0.3)
        d = node.counters.dropped
        assert d.get("unauthorised") == 1 and d.get("invalid") == 1 and d.get("undecodable") == 2, d
        assert node.status == "ready" and th.is_alive()
    finally:
        _stop(node, th, sub, prod)


def test_a_flood_is_cut_to_the_configured_rate(tmp_path):
    cfg, node, th, sub, prod = _ingress(tmp_path, max_rate_hz=50.0)
    try:
        for i in range(400):
            prod.send(M.EStop(reason=f"flood {i}"))
        time.sleep(1.0)
        got = sub.drain()
        assert 30 <= len(got) <= 120, len(got)                    # ~50/s burst allowance, not 400
        assert node.counters.dropped.get("rate", 0) >= 280
    finally:
        _stop(node, th, sub, prod)


def test_config_refuses_topics_outside_the_ingress_set():
    from kinebridge.runtime.config import ConfigError, parse_config
    with pytest.raises(ConfigError, match="cannot come through the ingress"):
        parse_config('[ingress]\nlocal_topics = ["control/state"]\n')
    with pytest.raises(ConfigError, match="cannot come through the ingress"):
        parse_config('[ingress.clients.vla]\ntopics = ["heartbeat"]\n')


def test_a_topic_registered_later_never_changes_what_the_ingress_admits():
    # conftest registers test/a with any publisher after the registry module loaded: the supervisor (this
    # process) and its node processes (which never import conftest) must still agree on the default
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.ingress.config import IngressConfig
    assert "test/a" in M.TOPICS and M.ANY in M.TOPICS["test/a"].publishers
    assert "test/a" not in IngressConfig().local_topics
    assert set(IngressConfig().local_topics) >= {"task", "chunk", "estop", "planner/instruction", "policy/tokens"}
