"""The Reflex app: the dashboard's pages, assembled. Served by `api.web` on the gateway's own port."""

from __future__ import annotations

import reflex as rx

from ui_reflex.pages.dashboard import DashboardState, dashboard_page
from ui_reflex.pages.endpoints import EndpointsState, endpoints_page
from ui_reflex.pages.models import ModelsState, models_page
from ui_reflex.pages.requests import RequestsState, requests_page

# An inline icon so the browser does not ask the server for /favicon.ico (a 404 in the console otherwise).
FAVICON = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<circle cx='8' cy='8' r='7' fill='%2312a594'/></svg>"
)

app = rx.App(
    head_components=[rx.el.link(rel="icon", href=FAVICON)],
    html_lang="en",
)
app.add_page(dashboard_page, route="/", title="Dashboard · Switchyard", on_load=DashboardState.load)
app.add_page(models_page, route="/models", title="Models · Switchyard", on_load=ModelsState.load)
app.add_page(requests_page, route="/requests", title="Requests · Switchyard", on_load=RequestsState.load)
app.add_page(endpoints_page, route="/endpoints", title="Endpoints · Switchyard", on_load=EndpointsState.load)
