"""Dependencies shared by admin controllers."""

from __future__ import annotations

from litestar import Request

from api.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime
