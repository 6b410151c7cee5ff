"""`/api/settings/attribution`: how client, end user and session are read from each request (``core.attribution``).

The mapping lives in the runtime settings (``app_settings``); the gateway recompiles it when it changes.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, put

from api.access_store import attribution_config
from api.admin.access_common import invalid
from api.admin.deps import get_runtime
from core.attribution import DEFAULT_ATTRIBUTION, AttributionConfig, AttributionSource

Source = AttributionSource | str  # {"kind", "name", "pattern", "fallback"} or "header:x-session-id"


class AttributionMapping(msgspec.Struct, forbid_unknown_fields=True):
    """Sources tried in order for each role; the first non-empty value wins.

    A role left out keeps the built-in default; an empty list turns it off. A source is an object
    (``kind`` ``header`` or ``body``, ``name``, optional regular expression ``pattern`` whose first group is the
    value, ``fallback`` to use the whole value when the pattern does not match) or the short form
    ``"header:x-session-id"`` / ``"body:metadata.user_id"``.
    """

    client: list[Source] | msgspec.UnsetType = msgspec.UNSET
    end_user: list[Source] | msgspec.UnsetType = msgspec.UNSET
    session: list[Source] | msgspec.UnsetType = msgspec.UNSET
    customized: list[str] | msgspec.UnsetType = msgspec.UNSET  # ignored: lets a GET answer be PUT back as it is


class EffectiveAttribution(msgspec.Struct):
    """The mapping in effect; ``customized`` lists the roles whose sources differ from the built-in defaults."""

    client: list[AttributionSource]
    end_user: list[AttributionSource]
    session: list[AttributionSource]
    customized: list[str]


def _effective(stored: dict[str, Any] | None) -> EffectiveAttribution:
    config: AttributionConfig = attribution_config(stored)
    return EffectiveAttribution(
        client=list(config.client),
        end_user=list(config.end_user),
        session=list(config.session),
        customized=[
            role
            for role in ("client", "end_user", "session")
            if getattr(config, role) != getattr(DEFAULT_ATTRIBUTION, role)
        ],
    )


class AttributionController(Controller):
    path = "/api/settings/attribution"
    tags = ["settings"]

    @get("/", summary="The attribution mapping in effect")
    async def get_attribution(self, request: Request) -> EffectiveAttribution:
        return _effective(get_runtime(request).live.attribution)

    @put("/", summary="Replace the attribution mapping (roles left out keep their defaults)")
    async def put_attribution(self, request: Request, data: AttributionMapping) -> EffectiveAttribution:
        stored = {
            role: [source if isinstance(source, str) else msgspec.to_builtins(source) for source in sources]
            for role, sources in msgspec.structs.asdict(data).items()
            if sources is not msgspec.UNSET and role != "customized"
        }
        try:
            attribution_config(stored)
        except ValueError as exc:
            raise invalid("invalid attribution mapping", [("attribution", str(exc))]) from None
        settings = await get_runtime(request).settings_store.update({"attribution": stored})
        return _effective(settings.attribution)

    @delete("/", summary="Go back to the built-in attribution defaults", status_code=204)
    async def reset_attribution(self, request: Request) -> None:
        await get_runtime(request).settings_store.update({"attribution": None})
