"""The Ollama listener: ``http://host:11434/api/...`` for clients that assume Ollama's own port.

Why an embedded server and not a second process: Granian serves one address per server, and a second
Switchyard process would own a second swap engine that starts its own copies of the models. So the
listener runs *inside* the gateway process, on the same event loop, as Granian's embedded server
(``granian.server.embed``), and calls the same :class:`api.gateway.ollama.OllamaApp` the main port serves
under ``/ollama``: same runtime, same engine, no forwarding hop, no second process to supervise.

Paths on the listener: ``/`` ("Ollama is running"), ``/api/*`` (the Ollama API, answered as
``/ollama/api/*``) and ``/v1/*`` (Ollama's OpenAI-compatible endpoints, answered by the gateway). The
admin API is never reachable here. ``SWITCHYARD_OLLAMA_PORT=0`` disables the listener; a port already in use
(e.g. by a real Ollama, or another Switchyard) is logged and the gateway runs on without it. The port is
probed with a plain bind first: Granian binds with ``SO_REUSEPORT``, which would otherwise let two
Switchyards share the port silently (and with several Granian workers, only the first one serves it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from api.gateway.asgi import Receive, Scope, Send
from api.gateway.errors import Family
from api.gateway.proxy import GatewayApp, _send_error

if TYPE_CHECKING:
    from api.runtime import Runtime

log = logging.getLogger("switchyard.ollama")


class OllamaPortApp:
    """The ASGI app the listener serves: Ollama paths to the Ollama API, ``/v1`` to the gateway."""

    def __init__(self, runtime: Runtime):
        from api.gateway.ollama import PREFIX, OllamaApp

        self._prefix = PREFIX
        self.ollama = OllamaApp(runtime)
        self.gateway = GatewayApp(runtime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/" or path == "/api" or path.startswith("/api/"):
            rewritten = self._prefix + (path if path != "/" else "")
            await self.ollama({**scope, "path": rewritten, "raw_path": rewritten.encode()}, receive, send)
        elif path.startswith("/v1/") and self.gateway.handles(path):
            await self.gateway(scope, receive, send)
        else:
            await _send_error(send, Family.OLLAMA, 404, f"unknown path {path}: this port serves the Ollama API")


class OllamaListener:
    """Starts and stops the embedded Granian server for :class:`OllamaPortApp`."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self.address: str | None = None

    async def start(self) -> None:
        settings = self.runtime.settings
        if settings.ollama_port <= 0:
            return
        from granian.constants import Interfaces
        from granian.server.embed import Server

        problem = port_in_use(settings.host, settings.ollama_port)
        if problem is not None:
            self._not_started(problem)
            return
        self._server = Server(
            OllamaPortApp(self.runtime),
            address=settings.host,
            port=settings.ollama_port,
            interface=Interfaces.ASGINL,
            log_enabled=False,
        )
        self._task = asyncio.create_task(self._server.serve(), name="ollama-listener")
        await asyncio.sleep(0.05)  # a port in use fails at once
        if self._task.done():
            self._not_started(str(self._task.exception() if not self._task.cancelled() else "cancelled"))
            self._task = None
            return
        self.address = f"http://{settings.host}:{settings.ollama_port}"
        self.runtime.logs.ring("proxy").write(f"Ollama API listening on {self.address}/api")

    def _not_started(self, problem: str) -> None:
        settings = self.runtime.settings
        message = f"Ollama listener not started on {settings.host}:{settings.ollama_port}: {problem}"
        log.warning(message)
        self.runtime.logs.ring("proxy").write(message)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.interrupt_signal = True
        self._server.main_loop_interrupt.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 10)
        self._task = None


def port_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (another listener holds it), or None when it is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"the port is in use ({exc.strerror})"
    return None
