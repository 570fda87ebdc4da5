"""One listening socket per worker process, all on the gateway's port (SO_REUSEPORT).

uvicorn's workers share the one socket the supervisor binds. On a loaded host the worker that wakes
first accepts every pending connection, so with keep-alive clients one worker can hold most of them
while the other idles (measured: 42 vs 13 CPU seconds over the open-data bench, p99 doubled). With a
socket per worker in one SO_REUSEPORT group, the kernel spreads new connections over the workers.

The supervisor binds a socket of the group without listening (it reserves the port and fails early if
it is taken); uvicorn hands the sockets to each worker it spawns by pickling them, and this socket
pickles as "open another socket of the group": each worker, also a restarted one, unpickles a fresh
socket of its own, which uvicorn then listens on. Linux lets only the same user join the group.
"""

from __future__ import annotations

import socket
from typing import Any


def _member(family: int, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class PortGroup(socket.socket):
    """The supervisor's socket of the group; in a worker it becomes one of its own (see the module)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _member, (self.family, self.getsockname()[:2])


def port_group(host: str, port: int) -> PortGroup:
    """Bind (not listen) the supervisor's socket of the group for host:port; OSError if the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = PortGroup(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")
