"""Application assembly: one ASGI callable for Granian.

Inference paths go straight to the raw-ASGI :class:`GatewayApp` (the hot path,
no framework routing or middleware), ``/ollama/...`` to the raw-ASGI :class:`OllamaApp`
(the Ollama API; ``/api/*`` on :3000 stays the admin API); everything else goes to the Litestar app
(admin API, OpenAPI docs, health). Both share one :class:`Runtime`, which the
Litestar lifespan starts and stops.
"""

from __future__ import annotations

import logging
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.datastructures import State
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from api import __version__
from api.admin.access_routes import ACCESS_ROUTES
from api.admin.admin_routes import ADMIN_MIDDLEWARE, ADMIN_ROUTES
from api.admin.events import events
from api.admin.library_routes import LIBRARY_ROUTES
from api.admin.logs import logs_history, logs_stream, logs_stream_all
from api.admin.models import ModelLifecycleController, ProfileController, running
from api.admin.requests import RequestController
from api.admin.system import health
from api.gateway.mcp_relay import McpRelayApp
from api.gateway.ollama import OllamaApp
from api.gateway.proxy import GatewayApp
from api.runtime import Runtime
from api.settings import Settings


class SwitchyardApp:
    """The ASGI callable: dispatches by path to the gateway or the Litestar app."""

    def __init__(self, runtime: Runtime, litestar_app: Litestar):
        self.runtime = runtime
        self.litestar = litestar_app
        self.gateway = GatewayApp(runtime)
        self.mcp_relays = McpRelayApp(runtime)
        self.ollama = OllamaApp(runtime)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.gateway.handles(scope["path"]):
            await self.gateway(scope, receive, send)
            return
        if scope["type"] == "http" and self.mcp_relays.handles(scope["path"]):
            await self.mcp_relays(scope, receive, send)
            return
        if scope["type"] == "http" and self.ollama.handles(scope["path"]):
            await self.ollama(scope, receive, send)
            return
        await self.litestar(scope, receive, send)


def build_litestar(runtime: Runtime) -> Litestar:
    async def on_startup(app: Litestar) -> None:
        await runtime.start()

    async def on_shutdown(app: Litestar) -> None:
        await runtime.stop()

    app = Litestar(
        route_handlers=[
            health,
            RequestController,
            running,
            ModelLifecycleController,
            ProfileController,
            logs_history,
            logs_stream_all,
            logs_stream,
            events,
            *ACCESS_ROUTES,
            *ADMIN_ROUTES,
            *LIBRARY_ROUTES,
        ],  # fmt: skip
        middleware=ADMIN_MIDDLEWARE,
        plugins=[SQLAlchemyPlugin(config=runtime.alchemy)],
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=OpenAPIConfig(
            title="Switchyard admin API", version=__version__, path="/api/docs", render_plugins=[SwaggerRenderPlugin()]
        ),
        state=State({"runtime": runtime}),
        # a 500 must leave a traceback in the log, not only "Internal Server Error" for the client
        logging_config=LoggingConfig(
            log_exceptions="always",
            configure_root_logger=False,
            disable_stack_trace={401, 403, 404, 405, 409, 412, 400},
        ),
        debug=False,
    )
    return app


def create_app(settings: Settings | None = None) -> SwitchyardApp:
    """Factory used by Granian (`--factory api.app:create_app`)."""
    settings = settings or Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "warn" else "WARNING")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runtime = Runtime.from_settings(settings)
    return SwitchyardApp(runtime, build_litestar(runtime))
