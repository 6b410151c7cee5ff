"""What the access-control controllers share: applying a change, and 4xx errors in Litestar's default shape."""

from __future__ import annotations

import re
from collections.abc import Iterable

from litestar import Request
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.ext.asyncio import AsyncSession

from api.admin.deps import get_runtime

#: a credential or relay slug, as the vault's placeholder syntax allows it
SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SLUG_RE = re.compile(SLUG_PATTERN)


async def commit_and_apply(request: Request, session: AsyncSession) -> None:
    """Commit the change, then rebuild the gateway's snapshots so the next request sees it.

    The commit comes first (not at the end of the request, as the plugin's autocommit would) because the reload
    reads through another connection.
    """
    await session.commit()
    await get_runtime(request).access.reload(changed=True)


def invalid(detail: str, problems: Iterable[tuple[str, str]] = ()) -> ValidationException:
    """A 400 like Litestar's own validation errors: ``{"status_code", "detail", "extra": [{"key", "message"}]}``."""
    extra = [{"key": key, "message": message, "source": "body"} for key, message in problems]
    return ValidationException(detail=detail, extra=extra or None)


def conflict(detail: str, extra: dict | list | None = None) -> HTTPException:
    return HTTPException(status_code=409, detail=detail, extra=extra)


def vault_unavailable(detail: str) -> HTTPException:
    """503: the vault cannot work as configured (its message names ``SWITCHYARD_SECRET_KEY``)."""
    return HTTPException(status_code=503, detail=detail)


def is_slug(value: str) -> bool:
    return _SLUG_RE.match(value) is not None
