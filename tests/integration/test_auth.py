"""Dashboard sign-in against the real gateway: sign-up, sessions, CSRF, throttling and passkeys.

The passkey tests use a software authenticator written here from the WebAuthn spec (a P-256 key,
`none` attestation, assertions signed over authenticatorData ‖ SHA-256(clientDataJSON)), so they
exercise the gateway's verification, not a copy of it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.servers import ADMIN_HEADERS

PASSWORD = "correct horse battery"
CONFIG = "models: {}\n"


# --------------------------------------------------------------- software authenticator


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cbor(value: Any) -> bytes:
    """The CBOR subset WebAuthn needs: integers, byte and text strings, maps (RFC 8949)."""

    def head(major: int, number: int) -> bytes:
        if number < 24:
            return bytes([major << 5 | number])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if number < 1 << (8 * size):
                return bytes([major << 5 | info]) + number.to_bytes(size, "big")
        raise ValueError("integer too large")

    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        encoded = value.encode()
        return head(3, len(encoded)) + encoded
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())
    raise TypeError(type(value))


class SoftAuthenticator:
    """One passkey on a P-256 key, answering `navigator.credentials.create/get` as a browser would."""

    UP, UV, AT = 0x01, 0x04, 0x40

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.sign_count = 0
        self.user_handle: str | None = None

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        rp_id = options["rp"]["id"]
        self.user_handle = options["user"]["id"]
        numbers = self.key.public_key().public_numbers()
        cose_key = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cbor(cose_key)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self.UP | self.UV | self.AT])
            + self.sign_count.to_bytes(4, "big")
            + attested
        )
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(self, options: dict[str, Any], origin: str) -> dict[str, Any]:
        self.sign_count += 1
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([self.UP | self.UV])
            + self.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": self.user_handle,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def gateway(gateway_factory):
    return gateway_factory(CONFIG)


def browser(gateway) -> httpx.Client:
    """A cookie-keeping client, like a browser tab on the dashboard."""
    return httpx.Client(base_url=gateway.base_url, timeout=30)


def sign_up(client: httpx.Client, username: str = "admin") -> dict[str, Any]:
    response = client.post("/api/auth/signup", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


# -------------------------------------------------------------------------------- tests


def test_first_visit_signs_up_the_admin_then_sign_up_closes(gateway):
    with browser(gateway) as tab:
        assert tab.get("/api/auth/status").json() == {"signup_open": True, "signed_in": False}
        assert tab.get("/api/system").status_code == 401
        response = tab.post("/api/auth/signup", json={"username": "admin", "password": PASSWORD})
        assert response.status_code == 201
        session = response.json()
        assert session["user"]["username"] == "admin" and session["csrf_token"]

        cookies = set_cookies(response)
        session_cookie = cookies["switchyard_session"].lower()
        assert "httponly" in session_cookie and "samesite=lax" in session_cookie and "secure" not in session_cookie
        csrf_cookie = cookies["switchyard_csrf"].lower()
        assert "httponly" not in csrf_cookie and tab.cookies["switchyard_csrf"] == session["csrf_token"]

        me = tab.get("/api/auth/me").json()
        assert me["kind"] == "session" and me["user"]["username"] == "admin"
        assert me["csrf_token"] == session["csrf_token"]
        assert tab.get("/api/system").status_code == 200
        assert tab.get("/api/auth/status").json() == {"signup_open": False, "signed_in": True}

    with browser(gateway) as other:
        late = other.post("/api/auth/signup", json={"username": "intruder", "password": PASSWORD})
        assert late.status_code == 403
        assert other.post("/api/auth/login", json={"username": "intruder", "password": PASSWORD}).status_code == 401
        assert other.post("/api/auth/login", json={"username": "admin", "password": PASSWORD}).status_code == 200
        assert other.get("/api/auth/me").json()["user"]["last_login_at"] is not None


def test_sign_up_refuses_weak_passwords(gateway):
    with browser(gateway) as tab:
        assert tab.post("/api/auth/signup", json={"username": "admin", "password": "short"}).status_code == 400
        assert tab.post("/api/auth/signup", json={"username": "a b", "password": PASSWORD}).status_code == 400
        assert tab.get("/api/auth/status").json()["signup_open"] is True


def test_session_cookie_is_secure_behind_an_https_proxy(gateway):
    with browser(gateway) as tab:
        response = tab.post(
            "/api/auth/signup", json={"username": "admin", "password": PASSWORD}, headers={"x-forwarded-proto": "https"}
        )
        assert response.status_code == 201
        for header in set_cookies(response).values():
            assert "secure" in header.lower()


def test_state_changing_calls_with_a_session_need_the_csrf_token(gateway):
    with browser(gateway) as tab:
        csrf = sign_up(tab)["csrf_token"]
        assert tab.post("/api/maintenance/prune").status_code == 403
        assert tab.post("/api/maintenance/prune", headers={"x-csrf-token": "guess"}).status_code == 403
        assert tab.patch("/api/settings", json={"retention_days": 9}).status_code == 403
        assert tab.get("/api/settings").json()["retention_days"] == 30  # the refused PATCH changed nothing
        assert tab.post("/api/maintenance/prune", headers={"x-csrf-token": csrf}).status_code == 200
        patched = tab.patch("/api/settings", json={"retention_days": 9}, headers={"x-csrf-token": csrf})
        assert patched.status_code == 200 and patched.json()["retention_days"] == 9
        # passkey registration is state-changing too; without a setting, the RP is the request's host
        assert tab.post("/api/auth/passkeys/register/options").status_code == 403
        options = tab.post("/api/auth/passkeys/register/options", headers={"x-csrf-token": csrf}).json()
        assert options["publicKey"]["rp"]["id"] == "127.0.0.1"

        # an API key is never sent implicitly by a browser: no CSRF token needed
        assert httpx.post(gateway.base_url + "/api/maintenance/prune", headers=ADMIN_HEADERS).status_code == 200

        assert tab.post("/api/auth/logout").status_code == 403
        assert tab.post("/api/auth/logout", headers={"x-csrf-token": csrf}).status_code == 200
        assert "switchyard_session" not in tab.cookies
        assert tab.get("/api/auth/me").status_code == 401
        assert tab.get("/api/system").status_code == 401


def test_a_stolen_cookie_stops_working_after_logout(gateway):
    with browser(gateway) as tab:
        csrf = sign_up(tab)["csrf_token"]
        stolen = tab.cookies["switchyard_session"]
        assert tab.post("/api/auth/logout", headers={"x-csrf-token": csrf}).status_code == 200
    replay = httpx.get(gateway.base_url + "/api/system", cookies={"switchyard_session": stolen})
    assert replay.status_code == 401


def test_login_is_throttled_per_account_and_per_address(gateway):
    with browser(gateway) as tab:
        sign_up(tab)
    with browser(gateway) as tab:
        for _ in range(5):
            assert tab.post("/api/auth/login", json={"username": "admin", "password": "wrong!!!"}).status_code == 401
        locked = tab.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
        assert locked.status_code == 429  # even the right password waits
        wait = int(locked.headers["retry-after"])
        assert 1 <= wait <= 2
        # another account from the same address still gets an answer (address allowance is larger)
        assert tab.post("/api/auth/login", json={"username": "nobody", "password": "wrong!!!"}).status_code == 401
        time.sleep(wait)
        assert tab.post("/api/auth/login", json={"username": "admin", "password": PASSWORD}).status_code == 200

        # the address: 20 failures whatever the account names, then every account waits
        for index in range(14):
            response = tab.post("/api/auth/login", json={"username": f"guess{index}", "password": "wrong!!!"})
            assert response.status_code == 401
        blocked = tab.post("/api/auth/login", json={"username": "fresh-name", "password": "wrong!!!"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


def test_passkey_registration_and_sign_in_with_the_public_url_setting(gateway_factory):
    origin = "https://gw.example.test"
    gateway = gateway_factory(CONFIG, env={"SWITCHYARD_PUBLIC_URL": origin})
    authenticator = SoftAuthenticator()
    with browser(gateway) as tab:
        csrf = sign_up(tab)["csrf_token"]
        started = tab.post("/api/auth/passkeys/register/options", headers={"x-csrf-token": csrf})
        assert started.status_code == 200
        options = started.json()["publicKey"]
        assert options["rp"]["id"] == "gw.example.test" and options["attestation"] == "none"
        credential = authenticator.create(options, origin)
        registered = tab.post(
            "/api/auth/passkeys/register/verify",
            json={"ceremony": started.json()["ceremony"], "credential": credential, "name": "laptop"},
            headers={"x-csrf-token": csrf},
        )
        assert registered.status_code == 201, registered.text
        assert registered.json()["name"] == "laptop"
        assert [p["name"] for p in tab.get("/api/auth/passkeys").json()] == ["laptop"]
        # a registration that comes from another origin does not verify
        again = tab.post("/api/auth/passkeys/register/options", headers={"x-csrf-token": csrf}).json()
        bad = SoftAuthenticator().create(again["publicKey"], "https://evil.example")
        refused = tab.post(
            "/api/auth/passkeys/register/verify",
            json={"ceremony": again["ceremony"], "credential": bad},
            headers={"x-csrf-token": csrf},
        )
        assert refused.status_code == 400

    with browser(gateway) as fresh:
        assert fresh.get("/api/auth/me").status_code == 401
        start = fresh.post("/api/auth/passkeys/login/options", json={}).json()
        assertion = authenticator.get(start["publicKey"], origin)
        signed_in = fresh.post(
            "/api/auth/passkeys/login/verify", json={"ceremony": start["ceremony"], "credential": assertion}
        )
        assert signed_in.status_code == 200, signed_in.text
        assert fresh.get("/api/auth/me").json()["user"]["username"] == "admin"
        assert fresh.get("/api/system").status_code == 200
        # a ceremony is single-use: replaying the same assertion fails
        replay = fresh.post(
            "/api/auth/passkeys/login/verify", json={"ceremony": start["ceremony"], "credential": assertion}
        )
        assert replay.status_code == 401

    with browser(gateway) as tab:
        # a cloned authenticator (its counter went backwards) is refused
        start = tab.post("/api/auth/passkeys/login/options", json={"username": "admin"}).json()
        assert start["publicKey"]["allowCredentials"][0]["id"] == b64url(authenticator.credential_id)
        authenticator.sign_count = 0
        cloned = authenticator.get(start["publicKey"], origin)
        response = tab.post(
            "/api/auth/passkeys/login/verify", json={"ceremony": start["ceremony"], "credential": cloned}
        )
        assert response.status_code == 401
        # a signature from another key is refused
        start = tab.post("/api/auth/passkeys/login/options", json={}).json()
        impostor = SoftAuthenticator()
        impostor.credential_id = authenticator.credential_id
        impostor.sign_count = 50
        forged = impostor.get(start["publicKey"], origin)
        response = tab.post(
            "/api/auth/passkeys/login/verify", json={"ceremony": start["ceremony"], "credential": forged}
        )
        assert response.status_code == 401
        assert tab.get("/api/auth/me").status_code == 401
