"""RealMan's SDK (``robotic-arm`` 1.1.6) as one process sees it, and the work-around for its receive-thread defect.

The SDK keeps process-global state: ``rm_init`` starts one TCP receive thread and one UDP thread for the
whole process, the UDP state callback is global, and at most five arm handles exist at once
(``gHandleList``). This module initialises it once (triple-thread mode), keeps the ctypes callbacks
referenced for the life of the process, and tears handles down without killing the receive thread.

The defect (found by fault tests, read from ``libapi_c.so`` 1.1.6 linux x86-64 with objdump)
-----------------------------------------------------------------------------------------------
* The receive thread loops: read every handle's socket fd from ``gHandleList`` into an fd_set, then
  ``select()`` for 200 ms; ``recv() == 0`` (the controller closed the connection) → sleep 1 ms and go
  round again. A ``select()`` error other than EINTR **ends the thread for good**.
* ``rm_delete_robot_arm`` closes the handle's socket *before* it takes the handle out of the list, and
  shares no lock with the thread. A close that falls between the thread's read of the fd and its
  ``select()`` gives EBADF and the thread is gone. After a controller-side close the thread spins at
  1 kHz, crossing that window every millisecond: about 1 reconnect in 50 hit it here (more under load).
* A failed ``rm_create_robot_arm`` (a handshake reply missing) leaves its handle (id −1) in the list
  until it is deleted: deleting it has the same hazard.
* ``rm_init`` is guarded by a static flag that ``rm_destroy`` does not clear, so nothing restarts the
  thread: every later request and connect in that process times out ("get_arm_software_info revice
  error"). Streaming (no reply awaited) and the UDP push keep working, which hides it.

What is done about it
---------------------
1. :func:`release` never closes a socket the thread may still ``select()`` on. It writes −1 into the
   fd field of the handle's SDK socket struct (the thread skips fds ≤ 0 from its next pass on, and
   ``rm_delete_robot_arm`` then closes −1, which does nothing), shuts the socket down (the controller
   sees the close at once), deletes the handle, and closes the fd itself only once the thread has
   blocked twice since (it can then no longer hold the fd in an fd_set). Layout checks first: the
   handle's slot must be in the exported ``gHandleList`` and its fd must be a stream socket; otherwise
   the plain ``rm_delete_robot_arm`` (hazard included) is used. Measured: 0 thread deaths in the reconnect
   cycles of ``faults.run_reconnect_cycles`` (was 1 in ~50).
2. :func:`receive_thread_alive`: the thread's id is learnt when ``rm_init`` starts it; once it has gone
   from ``/proc/self/task`` it is dead.
3. :func:`reinitialise` for when it died anyway (other code deleting handles, an unverified SDK build):
   ``rm_destroy`` (joins both threads, frees every handle), clear ``rm_init``'s guard, ``rm_init``,
   register the callbacks again. The guard is a static int at a fixed offset known for the verified
   build only (sha256 below); with any other build this raises and the process must be restarted.
   Every handle of the process is invalidated (:func:`epoch` changes; drivers are told through
   :func:`on_reinitialise`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import socket
import stat
import threading
import time
from typing import Callable

__all__ = ["SETTINGS", "sdk", "epoch", "receive_thread_alive", "release", "reinitialise", "can_reinitialise",
           "on_reinitialise", "register_callback", "socket_fd", "thread_ids", "push_sockets", "queued_push", "status",
           "SdkUnavailable"]

#: the build whose internals were read (linux x86-64 ``libapi_c.so`` of robotic-arm 1.1.6)
VERIFIED_BUILDS = {
    "6a5d96ff8144d04a5058e77ef37bf7da72904e4a336921eb1917c72a3772a036": {
        "rm_init": 0x262F0,      # exported function, to find the load address
        "init_flag": 0x3DDE74,   # static int rm_init checks first (init_flag.10207)
    },
}
_SLOT_SOCKET = 0x8       # gHandleList entry → its socket handle (struct: int fd first, then …, close() at +0x60)
_SLOT_PUBLIC = 0x18      # gHandleList entry → the rm_robot_handle the Python wrapper holds
_REAP_EVERY_S = 0.02
_UNKNOWN_THREAD_DELAY_S = 2.0    # close a retired fd this late when the receive thread's id is unknown


class SdkUnavailable(RuntimeError):
    """The SDK cannot be used (not installed, or its receive thread died and cannot be restarted)."""


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rm = None
        self.lib = None
        self.offsets: dict | None = None       # VERIFIED_BUILDS entry when the library's hash matches
        self.base = 0
        self.handle_list = None                 # (c_void_p * 5) over gHandleList
        self.recv_tid: int | None = None
        self.udp_tid: int | None = None
        self.epoch = 0
        self.callbacks: list[tuple[str, object]] = []   # (registration method name, ctypes thunk)
        self.reinit_hooks: list[Callable[[str], None]] = []
        self.graveyard: list[list] = []         # [fd, receive tid, voluntary switches at retirement, t]
        self.reaper: threading.Thread | None = None
        self.releases = 0
        self.plain_deletes = 0
        self.reinitialisations = 0
        self.last_death: str | None = None


_S = _State()

#: switches for measurements (``faults.run_reconnect_cycles``): ``safe_release`` False deletes handles the
#: plain way (the SDK's hazard included), ``auto_reinitialise`` False leaves a dead receive thread dead
SETTINGS = {"safe_release": True, "auto_reinitialise": True}


# ------------------------------------------------------------------------------------------ init
def _tasks() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _comm(tid: int) -> str | None:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _start_threads(rm) -> None:
    """``rm_init`` in triple-thread mode; learn the ids of the two threads it starts (receive first)."""
    before = _tasks()
    with contextlib.redirect_stdout(io.StringIO()):    # the SDK prints its version on init
        rm.RoboticArm(rm.rm_thread_mode_e.RM_TRIPLE_MODE_E)
    mine = _comm(threading.get_native_id())
    new = sorted(t for t in _tasks() - before if _comm(t) == mine)   # threads inherit the creator's name
    _S.recv_tid, _S.udp_tid = (new[0], new[1]) if len(new) >= 2 else (None, None)


def _load_layout(rm) -> None:
    try:
        from Robotic_Arm import rm_ctypes_wrap as wrap

        lib = wrap._libs["libapi_c.so"].access["cdecl"]
        with open(lib._name, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        _S.lib = lib
        _S.handle_list = (ctypes.c_void_p * 5).in_dll(lib, "gHandleList")
        _S.offsets = VERIFIED_BUILDS.get(digest)
        if _S.offsets is not None:
            _S.base = ctypes.cast(lib.rm_init, ctypes.c_void_p).value - _S.offsets["rm_init"]
    except Exception:       # another platform or build: plain deletes, no re-initialisation
        _S.lib = _S.handle_list = _S.offsets = None


def sdk():
    """The SDK module, initialised once per process in triple-thread mode."""
    with _S.lock:
        if _S.rm is None:
            try:
                from Robotic_Arm import rm_robot_interface as rm
            except ImportError as exc:  # pragma: no cover - robotic-arm is a core dependency
                raise SdkUnavailable("RealMan's SDK is not installed: pip install robotic-arm==1.1.6") from exc
            _start_threads(rm)
            _load_layout(rm)
            _S.rm = rm
        return _S.rm


def register_callback(method: str, thunk) -> None:
    """``RoboticArm().<method>(thunk)`` now and again after every re-initialisation (thunk kept alive)."""
    rm = sdk()
    with _S.lock:
        _S.callbacks.append((method, thunk))
        getattr(rm.RoboticArm(), method)(thunk)


def on_reinitialise(hook: Callable[[str], None]) -> None:
    """``hook(reason)`` after :func:`reinitialise` has freed every handle of the process."""
    _S.reinit_hooks.append(hook)


def epoch() -> int:
    """Changes when :func:`reinitialise` frees every handle: a handle from an older epoch is gone."""
    return _S.epoch


# ----------------------------------------------------------------------------- receive thread
def receive_thread_alive() -> bool | None:
    """Whether the SDK's TCP receive thread still runs (None: its id could not be learnt)."""
    tid = _S.recv_tid
    if tid is None:
        return None
    return os.path.exists(f"/proc/self/task/{tid}")


def thread_ids() -> list[int]:
    """Native ids of the SDK's receive and UDP threads (those learnt at ``rm_init``)."""
    return [t for t in (_S.recv_tid, _S.udp_tid) if t is not None]


def _voluntary_switches(tid: int | None) -> int | None:
    if tid is None:
        return None
    try:
        with open(f"/proc/self/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def can_reinitialise() -> bool:
    """True when this SDK build's ``rm_init`` guard is known (so a dead receive thread can be restarted)."""
    sdk()
    return _S.offsets is not None


def reinitialise(reason: str) -> None:
    """Restart the SDK's threads after its receive thread died (see the module docstring).

    Frees every handle of the process; raises :class:`SdkUnavailable` when this build is not the
    verified one (then only a new process helps)."""
    rm = sdk()
    with _S.lock:
        if not SETTINGS["auto_reinitialise"]:
            raise SdkUnavailable("the RealMan SDK's TCP receive thread has exited and restarting it is switched off "
                                 "(sdk.SETTINGS['auto_reinitialise'])")
        if _S.offsets is None:
            raise SdkUnavailable(
                "the RealMan SDK's TCP receive thread has exited and this SDK build is not the verified "
                "robotic-arm 1.1.6 one, so it cannot be restarted: no controller can be reached from this "
                "process until it is restarted")
        rm.RoboticArm.rm_destroy()                       # joins both threads, frees every handle
        ctypes.c_int.from_address(_S.base + _S.offsets["init_flag"]).value = 0
        _start_threads(rm)
        for method, thunk in _S.callbacks:
            getattr(rm.RoboticArm(), method)(thunk)
        _S.epoch += 1
        _S.reinitialisations += 1
        _S.last_death = reason
        for entry in _S.graveyard:                       # no thread can select() on them any more
            _close(entry[0])
        _S.graveyard.clear()
    for hook in tuple(_S.reinit_hooks):
        with contextlib.suppress(Exception):
            hook(reason)


# ------------------------------------------------------------------------------------ handles
def _slot(arm) -> int | None:
    """Address of ``arm``'s entry in gHandleList (None: not in the list or layout unknown)."""
    if _S.handle_list is None or getattr(arm, "handle", None) is None:
        return None
    try:
        public = ctypes.addressof(arm.handle.contents)
    except (ValueError, TypeError):
        return None
    entry = public - _SLOT_PUBLIC
    return entry if entry in tuple(_S.handle_list) else None


def _is_stream_socket(fd: int) -> bool:
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        with socket.socket(fileno=os.dup(fd)) as s:
            return s.type == socket.SOCK_STREAM
    except OSError:
        return False


def socket_fd(arm) -> int | None:
    """The fd of ``arm``'s TCP socket inside the SDK (None when the layout checks fail)."""
    entry = _slot(arm)
    if entry is None:
        return None
    sock = ctypes.c_void_p.from_address(entry + _SLOT_SOCKET).value
    if not sock:
        return None
    fd = ctypes.c_int.from_address(sock).value
    return fd if fd > 0 and _is_stream_socket(fd) else None


_SO_TIMESTAMPNS = 35      # linux/asm-generic/socket.h (also SCM_TIMESTAMPNS)


def push_sockets(port: int) -> list[socket.socket]:
    """Duplicates of the SDK's UDP socket(s) bound to ``port``, with kernel receive stamps switched on
    (``SO_TIMESTAMPNS``; the SDK's own ``recvfrom`` ignores them). :func:`queued_push` peeks at them."""
    out = []
    try:
        fds = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        return out
    for fd in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.type == socket.SOCK_DGRAM and s.family == socket.AF_INET and s.getsockname()[1] == port:
                s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                out.append(s)
                continue
        except OSError:
            pass
        s.close()
    return out


def queued_push(sockets, ip: str) -> int | None:
    """CLOCK_MONOTONIC ns at which the kernel received the first datagram still waiting in one of
    ``sockets`` if it came from ``ip`` (the controller pushed then; this process has not read it yet),
    else None. A peek: nothing is taken from the SDK."""
    best = None
    for s in sockets:
        try:
            _, anc, _, addr = s.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            continue
        if not addr or addr[0] != ip:
            continue
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = int.from_bytes(data[:8], "little", signed=True), int.from_bytes(data[8:16], "little")
                mono = sec * 1_000_000_000 + nsec - (time.time_ns() - time.monotonic_ns())
                best = mono if best is None else max(best, mono)
    return best


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _shutdown(fd: int) -> None:
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as s:
        s.shutdown(socket.SHUT_RDWR)


def release(arm, handle_epoch: int | None = None) -> str:
    """Delete ``arm``'s SDK handle without risking the receive thread; returns what was done.

    ``"safe"``: fd detached, handle deleted, fd closed later; ``"plain"``: ``rm_delete_robot_arm`` as is
    (layout checks failed); ``"stale"``: the handle belongs to an earlier epoch (already freed);
    ``"absent"``: it is not in the SDK's list (nothing to delete)."""
    sdk()
    with _S.lock:
        if handle_epoch is not None and handle_epoch != _S.epoch:
            return "stale"
        if _S.handle_list is None or not SETTINGS["safe_release"]:
            with contextlib.suppress(Exception):
                arm.rm_delete_robot_arm()
            _S.plain_deletes += 1
            return "plain"
        entry = _slot(arm)
        if entry is None:
            return "absent"
        sock = ctypes.c_void_p.from_address(entry + _SLOT_SOCKET).value
        fd_ref = ctypes.c_int.from_address(sock) if sock else None
        fd = fd_ref.value if fd_ref is not None else -1
        if fd <= 0 or not _is_stream_socket(fd):
            with contextlib.suppress(Exception):
                arm.rm_delete_robot_arm()
            _S.plain_deletes += 1
            return "plain"
        switches = _voluntary_switches(_S.recv_tid)
        fd_ref.value = -1                 # the thread stops watching it; the SDK's close() gets −1
        _shutdown(fd)                     # the controller sees the connection end now
        with contextlib.suppress(Exception):
            arm.rm_delete_robot_arm()
        _S.graveyard.append([fd, _S.recv_tid, switches, time.monotonic()])
        _S.releases += 1
        _start_reaper()
        return "safe"


def _reap() -> None:
    with _S.lock:
        keep = []
        for entry in _S.graveyard:
            fd, tid, v0, t0 = entry
            alive = tid is not None and os.path.exists(f"/proc/self/task/{tid}")
            v = _voluntary_switches(tid) if alive else None
            if tid is not None and not alive:
                done = True                                  # no thread left to select() on it
            elif v0 is not None and v is not None:
                done = v >= v0 + 2                           # blocked twice since: past any fd_set holding it
            else:
                done = time.monotonic() - t0 > _UNKNOWN_THREAD_DELAY_S
            if done:
                _close(fd)
            else:
                keep.append(entry)
        _S.graveyard[:] = keep


def _reaper_loop() -> None:
    while True:
        time.sleep(_REAP_EVERY_S)
        _reap()
        with _S.lock:
            if not _S.graveyard:
                _S.reaper = None
                return


def _start_reaper() -> None:
    if _S.reaper is None:
        _S.reaper = threading.Thread(target=_reaper_loop, name="realman-sdk-fd-reaper", daemon=True)
        _S.reaper.start()


def status() -> dict:
    """What the SDK plumbing knows (for stats and error messages)."""
    sdk()
    with _S.lock:
        return {"receive_thread_alive": receive_thread_alive(), "layout_verified": _S.offsets is not None,
                "handle_list_visible": _S.handle_list is not None, "epoch": _S.epoch,
                "safe_releases": _S.releases, "plain_deletes": _S.plain_deletes,
                "reinitialisations": _S.reinitialisations, "fds_pending_close": len(_S.graveyard),
                "last_death": _S.last_death}
