"""The admin API's route handlers and middleware added by the admin/sign-in issue, for `build_litestar`.

`ADMIN_ROUTES` goes into the Litestar app's route handlers, `ADMIN_MIDDLEWARE` into its
middleware (the guard first, so a 401 never computes a body to tag).
"""

from __future__ import annotations

from litestar.middleware import ASGIMiddleware
from litestar.types import ControllerRouterHandler

from api.admin.article import read_article
from api.admin.config_file import ConfigController
from api.admin.etag import ETagMiddleware
from api.admin.live_settings import MaintenanceController, SettingsController
from api.admin.log_events import log_events
from api.admin.model_admin import ModelAdminController
from api.admin.pricing import PricingController
from api.admin.system_status import gpu_status, system_status
from api.auth.guard import AdminGuard
from api.auth.routes import AuthController, PasskeyController
from api.metrics import metrics

ADMIN_ROUTES: list[ControllerRouterHandler] = [
    AuthController,
    PasskeyController,
    ModelAdminController,
    system_status,
    gpu_status,
    SettingsController,
    MaintenanceController,
    ConfigController,
    PricingController,
    log_events,
    read_article,
    metrics,
]

ADMIN_MIDDLEWARE: list[ASGIMiddleware] = [AdminGuard(), ETagMiddleware()]
