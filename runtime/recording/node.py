"""The recorder node: every topic on the bus, to MCAP files rotated by size and duration.

It listens to every node's endpoint with an empty subscription and hands each raw message to
:func:`kinebridge.runtime.recording.recorder.record`, which writes it into compressed chunks and
closes a chunk every ``recorder.flush_every_s`` — a crash of any process, this one included, loses at
most that much. The recording is ``kinebridge-<start>-<pid>-000.mcap``, ``-001``, … (a new file every
``recorder.rotate_mb`` / ``recorder.rotate_s``, each complete); a restarted recorder starts a new
recording beside the old one; nothing already written is touched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kinebridge.runtime.node import Node
from kinebridge.runtime.recording.recorder import RotatingRecorder, record

__all__ = ["RecorderNode"]


class RecorderNode(Node):
    topics = ()   # everything

    def setup(self) -> None:
        rc = self.cfg.recorder
        d = Path(rc.directory)
        d.mkdir(parents=True, exist_ok=True)
        self.rec = RotatingRecorder(d, f"kinebridge-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                                    rotate_mb=rc.rotate_mb, rotate_s=rc.rotate_s, flush_every_s=rc.flush_every_s,
                                    names=self.cfg.bus.names(),
                                    metadata={"node": self.name, "endpoints": " ".join(self.sub.endpoints)})
        self.path = self.rec.path
        self.detail["path"] = str(self.path)

    def loop(self) -> None:
        def idle():
            self.detail["messages"] = self.rec.messages_written
            self.detail["path"] = str(self.rec.path)
            self.detail["files"] = len(self.rec.paths)
            self.heartbeat()

        record(self.sub, self.rec, self._stop, on_idle=idle, idle_ms=int(1e3 / self.cfg.supervisor.heartbeat_hz))

    def teardown(self) -> None:
        rec = getattr(self, "rec", None)
        if rec is not None:
            rec.close()
            self.detail["messages"] = rec.messages_written
