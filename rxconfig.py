"""Reflex configuration for the Switchyard dashboard (ui_reflex)."""

import os

import reflex as rx

config = rx.Config(
    app_name="ui_reflex",
    telemetry_enabled=False,
    api_url=os.environ.get("REFLEX_API_URL", f"http://localhost:{os.environ.get('SWITCHYARD_PORT', '3000')}"),
)
