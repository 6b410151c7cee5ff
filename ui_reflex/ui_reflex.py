"""The Reflex app: the dashboard's pages, assembled. Served by `api.web` on the gateway's own port.

Every page but /login runs ``SessionState.require`` first: a visitor without a session goes to /login.
"""

from __future__ import annotations

from collections.abc import Callable

import reflex as rx

from ui_reflex.pages.attribution import AttributionState, attribution_page
from ui_reflex.pages.config import ConfigState, config_page
from ui_reflex.pages.dashboard import DashboardState, dashboard_page
from ui_reflex.pages.endpoints import EndpointsState, endpoints_page
from ui_reflex.pages.key_detail import KeyDetailState, key_detail_page
from ui_reflex.pages.keys import KeysState, keys_page
from ui_reflex.pages.login import LoginState, login_page
from ui_reflex.pages.logs import LogsState, logs_page
from ui_reflex.pages.model_detail import ModelDetailState, model_detail_page
from ui_reflex.pages.models import ModelsState, models_page
from ui_reflex.pages.playground import PlaygroundState, playground_page
from ui_reflex.pages.policies import PoliciesState, policies_page
from ui_reflex.pages.requests import RequestsState, requests_page
from ui_reflex.pages.settings import SettingsState, settings_page
from ui_reflex.session import SessionState

# An inline icon so the browser does not ask the server for /favicon.ico (a 404 in the console otherwise).
FAVICON = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<circle cx='8' cy='8' r='7' fill='%2312a594'/></svg>"
)

app = rx.App(
    head_components=[rx.el.link(rel="icon", href=FAVICON)],
    html_lang="en",
)


def signed_in_page(component: Callable[[], rx.Component], route: str, title: str, load: object) -> None:
    """Add a page that only a signed-in user sees: the session check runs before the page's own load."""
    app.add_page(component, route=route, title=f"{title} · Switchyard", on_load=[SessionState.require, load])


app.add_page(login_page, route="/login", title="Sign in · Switchyard", on_load=LoginState.load)
signed_in_page(dashboard_page, "/", "Dashboard", DashboardState.load)
signed_in_page(models_page, "/models", "Models", ModelsState.load)
signed_in_page(model_detail_page, "/models/[[...splat]]", "Model", ModelDetailState.load)
signed_in_page(requests_page, "/requests", "Requests", RequestsState.load)
signed_in_page(logs_page, "/logs", "Logs", LogsState.load)
signed_in_page(keys_page, "/keys", "API keys", KeysState.load)
signed_in_page(key_detail_page, "/keys/[key_id]", "API key", KeyDetailState.load)
signed_in_page(policies_page, "/policies", "Policies", PoliciesState.load)
signed_in_page(attribution_page, "/attribution", "Attribution", AttributionState.load)
signed_in_page(config_page, "/config", "Config", ConfigState.load)
signed_in_page(endpoints_page, "/endpoints", "Endpoints", EndpointsState.load)
signed_in_page(playground_page, "/playground", "Playground", PlaygroundState.load)
signed_in_page(settings_page, "/settings", "Settings", SettingsState.load)
