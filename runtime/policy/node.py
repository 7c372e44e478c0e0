"""The decoder node (kind ``decoder``) and the policy node (kind ``policy``).

**Decoder** — ``policy/tokens`` in (from the policy node, or from any outside producer through the ingress),
``chunk`` out, for the control node to validate, blend at the seam and limit like any other chunk. For each
``Tokens`` message, in order, and counted by reason when refused (heartbeat ``detail.rejected``; nothing is
published then — the control node keeps executing what it has, or holds):

1. ``tokenizer`` — if given, the id of the tokenizer the decoder loaded (``tokenizer``);
2. age — the observation ``obs_ns`` at most ``[policy] max_obs_age_s`` old at arrival and at most
   ``max_future_s`` ahead (``stale`` / ``future``);
3. the code sequence against the manifest's layout: delimiters, each group's level count, code ranges
   (:class:`~kinebridge.runtime.policy.decoder.TokenDecoder`: ``delimiter``, ``levels``, ``range``, ``length``);
4. the anchor — ``q_obs`` if the producer sent the joints it observed, checked against the commanded joints at
   ``obs_ns`` (within ``max_anchor_error_rad``; ``anchor``), else the commanded joints at ``obs_ns`` from the
   ``control/state`` history (``no_state`` if there is none that old);
5. decoded and published as ``Chunk(t0 = obs_ns, dt)``: the chunk starts at the observation the tokens were
   generated for, so a late chunk is judged by the control node's staleness rule like any other; ``derived``
   names the tokens message (and what it was derived from).

**Policy** — ``[policy] producer = "replay-tokens"``: the tokens of one episode of a Kine data set
(``<dataset>/tokens/<tokenizer id>/``), one sequence per step at the data set's action rate, each with the
episode's observed joints as ``q_obs`` and ``obs_ns`` = now − ``latency_s`` — the stand-in for the VLA until
the generator exists. It starts once the control node streams and a decoder is ready, and reports ``done``.
"""

from __future__ import annotations

import time

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.node import Node

__all__ = ["DecoderNode", "PolicyNode", "StateHistory"]


class StateHistory:
    """The commanded joints from ``control/state`` over the last seconds, looked up by time."""

    def __init__(self, n: int):
        self.t = np.full(n, -np.inf)
        self.q = np.zeros((n, 7))
        self.n = 0
        self._k = 0

    def add(self, t: float, q) -> None:
        k = self._k % self.t.shape[0]
        self.t[k] = t
        self.q[k] = q
        self._k += 1
        self.n = min(self.n + 1, self.t.shape[0])

    def at(self, t: float, slack: float = 0.05):
        """Joints at ``t`` (linear between states; the newest up to ``slack`` s after it); None if the
        history does not reach back to ``t`` or has nothing that recent."""
        if not self.n:
            return None
        k1 = (self._k - 1) % self.t.shape[0]
        if t >= self.t[k1]:
            return self.q[k1].copy() if t - self.t[k1] <= slack else None
        order = np.argsort(self.t[:self.n] if self.n < self.t.shape[0] else self.t)
        ts, qs = self.t[order], self.q[order]
        if t < ts[0]:
            return None
        i = int(np.searchsorted(ts, t, side="right")) - 1
        if i >= len(ts) - 1:
            return qs[-1].copy()
        a = (t - ts[i]) / max(ts[i + 1] - ts[i], 1e-12)
        return (1 - a) * qs[i] + a * qs[i + 1]


class DecoderNode(Node):
    tick_hz = 10.0

    def subscriptions(self):
        return (M.Tokens.TOPIC, M.ControlState.TOPIC)

    def setup(self) -> None:
        from kinebridge.runtime.policy.decoder import TokenDecoder
        p = self.cfg.policy
        self.status = "loading tokenizer"
        self.dec = TokenDecoder(p.tokenizer, p.backend)
        rate = self.cfg.control.rate_hz / self.cfg.control.state_every
        self.history = StateHistory(int(p.state_history_s * rate) + 8)
        self.rejected: dict[str, int] = {}
        self.decoded = 0
        self._lat_us: list[float] = []
        self.detail.update(tokenizer=self.dec.id, backend=self.dec.backend, decoded=0, rejected={})

    def _reject(self, reason: str, text: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.detail["rejected"] = dict(self.rejected)
        self.detail["last_reject"] = f"{reason}: {text}"[:300]

    def on_message(self, msg) -> None:
        if msg.topic == M.ControlState.TOPIC:
            self.history.add(msg.body.t, msg.arrays["q_cmd"])
            return
        self.handle_tokens(msg, time.monotonic_ns())

    def handle_tokens(self, msg, arrival_ns: int) -> bool:
        """One ``Tokens`` message (see the module docstring); True if a chunk was published."""
        from kinebridge.runtime.policy.decoder import TokenError
        p = self.cfg.policy
        b: M.Tokens = msg.body
        if b.tokenizer and b.tokenizer != self.dec.id:
            self._reject("tokenizer", f"tokens for tokenizer {b.tokenizer!r}, the decoder runs {self.dec.id!r}")
            return False
        age = (arrival_ns - b.obs_ns) * 1e-9
        if age > p.max_obs_age_s:
            self._reject("stale", f"tokens for an observation {age:.3f} s old (policy.max_obs_age_s = {p.max_obs_age_s:g} s)")
            return False
        if age < -p.max_future_s:
            self._reject("future", f"tokens for an observation {-age:.3f} s in the future")
            return False
        t_obs = b.obs_ns * 1e-9
        q_hist = self.history.at(t_obs)
        if b.q_obs is not None:
            q_obs = np.asarray(b.q_obs, dtype=np.float64)
            if q_hist is not None and np.max(np.abs(q_obs - q_hist)) > p.max_anchor_error_rad:
                j = int(np.argmax(np.abs(q_obs - q_hist)))
                self._reject("anchor", f"q_obs joint {j + 1} is {np.degrees(abs(q_obs[j] - q_hist[j])):.1f}° from the "
                                       f"commanded joints at obs_ns (policy.max_anchor_error_rad = "
                                       f"{p.max_anchor_error_rad:g})")
                return False
        elif q_hist is None:
            self._reject("no_state", "no q_obs and no control/state at obs_ns to anchor the chunk to")
            return False
        else:
            q_obs = q_hist
        try:
            rows = self.dec.decode(msg.arrays["codes"], q_obs)
        except TokenError as exc:
            self._reject(exc.reason, str(exc))
            return False
        self.pub.send(M.Chunk(t0=t_obs, dt=self.dec.dt), {"q": rows}, derived=[msg.stamp, *msg.derived[:15]])
        self.decoded += 1
        self._lat_us.append((time.monotonic_ns() - arrival_ns) / 1e3)
        if len(self._lat_us) >= 10:
            a = np.asarray(self._lat_us)
            self.detail["arrival_to_chunk_us"] = {"median": round(float(np.median(a)), 1), "max": round(float(a.max()), 1)}
            self._lat_us.clear()
        self.detail["decoded"] = self.decoded
        return True


class PolicyNode(Node):
    """``[policy] producer``: ``replay-tokens`` (see the module docstring)."""

    tick_hz = 200.0

    def subscriptions(self):
        return (M.ControlState.TOPIC, M.Heartbeat.TOPIC)

    def setup(self) -> None:
        from kinebridge.runtime.policy.replay import load_replay
        p = self.cfg.policy
        if p.producer != "replay-tokens":       # pragma: no cover - the config admits nothing else yet
            raise ValueError(f"policy.producer {p.producer!r}: not implemented")
        self.replay = load_replay(p.dataset, p.tokenizer, p.episode)
        self.detail.update(producer=p.producer, episode=self.replay.episode, steps=len(self.replay.codes),
                           tokenizer=self.replay.tokenizer)
        self._streaming = False
        self._decoder_ready = False
        self._t_start = None
        self._k = 0
        self.status = "waiting for the arm and a decoder"

    def on_message(self, msg) -> None:
        if msg.topic == M.ControlState.TOPIC:
            self._streaming = True
        elif msg.topic == M.Heartbeat.TOPIC and msg.body.kind == "decoder" and msg.body.status == "ready":
            self._decoder_ready = True

    def on_tick(self, now: float) -> None:
        r = self.replay
        if self._t_start is None:
            if self._streaming and self._decoder_ready:
                self._t_start = now + self.cfg.policy.start_delay_s
                self.status = "replaying"
            return
        if self._k >= len(r.codes):
            self.status = "done"
            return
        if now < self._t_start + self._k * r.dt:
            return
        lat = self.cfg.policy.latency_s
        self.pub.send(M.Tokens(obs_ns=time.monotonic_ns() - int(lat * 1e9), tokenizer=r.tokenizer,
                               q_obs=[float(v) for v in r.q[self._k]]), {"codes": r.codes[self._k]})
        self._k += 1
        self.detail["sent"] = self._k
