"""The access-control part of the admin API, as one list for ``Litestar(route_handlers=[..., *ACCESS_ROUTES])``."""

from __future__ import annotations

from api.admin.attribution import AttributionController
from api.admin.credentials import CredentialController
from api.admin.keys import KeyController
from api.admin.mcp_relays import McpRelayController
from api.admin.policies import PolicyController
from api.admin.sampling_overrides import SamplingOverrideController

ACCESS_ROUTES = [
    KeyController,
    PolicyController,
    CredentialController,
    McpRelayController,
    AttributionController,
    SamplingOverrideController,
]
