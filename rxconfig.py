"""Reflex configuration for the Switchyard dashboard (ui_reflex).

`api_url` is baked into the exported frontend (the websocket URL), so it must name the port the
combined server listens on; `api.web.build_frontend(port)` sets REFLEX_API_URL for the export.
State lives in memory: dashboard state is per browser tab and disposable, and the API is the source of truth.
"""

import os

import reflex as rx

config = rx.Config(
    app_name="ui_reflex",
    telemetry_enabled=False,
    api_url=os.environ.get("REFLEX_API_URL", f"http://localhost:{os.environ.get('SWITCHYARD_PORT', '3000')}"),
    state_manager_mode="memory",
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="teal", radius="medium"))],
    disable_plugins=[rx.plugins.SitemapPlugin],
    show_built_with_reflex=False,
)
