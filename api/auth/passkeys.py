"""Passkey (WebAuthn) ceremonies with the `webauthn` package.

Both ceremonies are two calls: `options` hands the browser a challenge (kept here, in memory,
for five minutes and usable once), `verify` checks what the authenticator signed against it.

The relying party (RP) is the site the passkey belongs to. Behind a reverse proxy with HTTPS
the gateway cannot know its public name, so it comes from settings: `SWITCHYARD_PUBLIC_URL`
(`https://ai.example.com` → RP ID `ai.example.com`, origin `https://ai.example.com`), or
`SWITCHYARD_RP_ID` and `SWITCHYARD_ORIGIN` separately. Unset, they are taken from the request's
`Host` header and scheme, which is right when the browser talks to the gateway directly.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from api.settings import Settings

CEREMONY_SECONDS = 300.0
RP_NAME = "Switchyard"


class PasskeyError(Exception):
    """The ceremony failed: unknown or expired challenge, or a response that does not verify."""


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str
    origin: str
    name: str = RP_NAME


@dataclass(frozen=True, slots=True)
class RegisteredPasskey:
    credential_id: str  # base64url
    public_key: bytes
    sign_count: int
    transports: list[str]


@dataclass(slots=True)
class _Pending:
    kind: Literal["registration", "authentication"]
    challenge: bytes
    rp: RelyingParty
    user_id: int | None
    expires: float


def relying_party(settings: Settings, scheme: str, host: str) -> RelyingParty:
    """The RP for a request: from settings when configured, else from the request's scheme and Host."""
    if settings.public_url:
        public = urlsplit(settings.public_url)
        return RelyingParty(id=public.hostname or "", origin=f"{public.scheme}://{public.netloc}")
    hostname = urlsplit(f"//{host}").hostname or "localhost"
    return RelyingParty(id=settings.rp_id or hostname, origin=settings.origin.rstrip("/") or f"{scheme}://{host}")


class PasskeyCeremonies:
    """Pending challenges and the calls into `webauthn`. Bounded: the oldest pending ceremony goes first."""

    def __init__(self, *, lifetime: float = CEREMONY_SECONDS, max_pending: int = 1000):
        self.lifetime = lifetime
        self.max_pending = max_pending
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    def registration_options(
        self, rp: RelyingParty, user_id: int, username: str, existing_credential_ids: list[bytes]
    ) -> tuple[str, dict[str, Any]]:
        """(ceremony id, the `publicKey` options for `navigator.credentials.create`)."""
        options = generate_registration_options(
            rp_id=rp.id,
            rp_name=rp.name,
            user_name=username,
            user_id=str(user_id).encode(),
            user_display_name=username,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in existing_credential_ids],
        )
        ceremony = self._remember("registration", options.challenge, rp, user_id)
        return ceremony, msgspec.json.decode(options_to_json(options))

    def verify_registration(self, ceremony: str, user_id: int, credential: dict[str, Any]) -> RegisteredPasskey:
        pending = self._take(ceremony, "registration")
        if pending.user_id != user_id:
            raise PasskeyError("this registration was started by another user")
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=pending.challenge,
                expected_rp_id=pending.rp.id,
                expected_origin=pending.rp.origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyError(f"the passkey registration did not verify: {exc}") from None
        response = credential.get("response") if isinstance(credential, dict) else None
        transports = response.get("transports") if isinstance(response, dict) else None
        return RegisteredPasskey(
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=[str(t) for t in transports] if isinstance(transports, list) else [],
        )

    def authentication_options(
        self, rp: RelyingParty, allow_credential_ids: list[bytes] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(ceremony id, `publicKey` options for `navigator.credentials.get`); no allow-list → discoverable keys."""
        options = generate_authentication_options(
            rp_id=rp.id,
            allow_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in allow_credential_ids or []],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        ceremony = self._remember("authentication", options.challenge, rp, None)
        return ceremony, msgspec.json.decode(options_to_json(options))

    def verify_authentication(
        self, ceremony: str, credential: dict[str, Any], public_key: bytes, sign_count: int
    ) -> int:
        """Check an assertion; returns the authenticator's new sign count."""
        pending = self._take(ceremony, "authentication")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=pending.challenge,
                expected_rp_id=pending.rp.id,
                expected_origin=pending.rp.origin,
                credential_public_key=public_key,
                credential_current_sign_count=sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise PasskeyError(f"the passkey sign-in did not verify: {exc}") from None
        return verified.new_sign_count

    # ---------------------------------------------------------------- pending

    def _remember(
        self, kind: Literal["registration", "authentication"], challenge: bytes, rp: RelyingParty, user_id: int | None
    ) -> str:
        now = time.monotonic()
        for key in [k for k, p in self._pending.items() if p.expires <= now]:
            del self._pending[key]
        while len(self._pending) >= self.max_pending:
            self._pending.popitem(last=False)
        ceremony = secrets.token_urlsafe(24)
        self._pending[ceremony] = _Pending(kind, challenge, rp, user_id, now + self.lifetime)
        return ceremony

    def _take(self, ceremony: str, kind: str) -> _Pending:
        pending = self._pending.pop(ceremony, None)
        if pending is None or pending.kind != kind or pending.expires <= time.monotonic():
            raise PasskeyError("unknown or expired passkey ceremony; start again")
        return pending
