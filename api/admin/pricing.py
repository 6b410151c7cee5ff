"""The pricing catalog remote models are costed with: what is loaded, and refreshing it."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import ValidationException

from api.admin.deps import get_runtime
from core.pricing import PricingError


class PricingStatus(msgspec.Struct):
    source: str
    models: int
    providers: list[str]


class PricingRefresh(msgspec.Struct):
    source: str  # a path on the server or an http(s) URL of a models.dev api.json


class PricingController(Controller):
    path = "/api/pricing"
    tags = ["pricing"]

    @get("/", summary="The pricing catalog in use")
    async def status(self, request: Request) -> PricingStatus:
        catalog = get_runtime(request).pricing
        return PricingStatus(source=catalog.source, models=catalog.model_count, providers=list(catalog.providers()))

    @post("/refresh", summary="Load a models.dev catalog from a file or URL; kept for the next start", status_code=200)
    async def refresh(self, request: Request, data: PricingRefresh) -> PricingStatus:
        runtime = get_runtime(request)
        catalog = runtime.pricing
        try:
            await asyncio.to_thread(catalog.refresh_from, data.source, save_to=runtime.pricing_cache_path)
        except PricingError as exc:
            raise ValidationException(str(exc)) from None
        return PricingStatus(source=catalog.source, models=catalog.model_count, providers=list(catalog.providers()))
