"""Ports on this machine: a free UDP or TCP port for a simulator, a test or a benchmark."""

from __future__ import annotations

import socket

__all__ = ["free_udp_port", "free_tcp_port"]


def _free(kind: int, host: str) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to on ``host`` right now (the OS's choice)."""
    return _free(socket.SOCK_DGRAM, host)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing is bound to on ``host`` right now (the OS's choice)."""
    return _free(socket.SOCK_STREAM, host)
