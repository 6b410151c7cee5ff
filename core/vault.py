"""The credential vault: upstream secrets encrypted at rest, and their injection into outbound requests.

Encryption. AES-256-GCM (``cryptography``) under a key derived with HKDF-SHA256 from one secret setting of at
least 32 characters. Each stored value is ``version (1 byte) || key check (4 bytes) || nonce (12 bytes) ||
ciphertext+tag``. The associated data is the credential's slug, so a ciphertext copied onto another credential
does not decrypt (renaming a slug means decrypting under the old one and encrypting under the new). The key check
is 4 bytes of a second HKDF output: it tells "this was encrypted under another secret" apart from "this was
altered", so the error says which. It reveals nothing a decryption attempt would not.

Injection. A :class:`CredentialBinding` on a policy rule or an MCP relay either

* sets an outbound header from a template (``x-api-key: {secret}``, ``authorization: Bearer {secret}``),
  replacing whatever the client sent under that name, or
* lets a placeholder the client sent, ``{{switchyard:credential:<slug>}}``, be replaced by the secret: in header
  values always, in the body only when the binding says ``in_body`` (a secret placed in a prompt can be echoed
  back by the model, so body replacement is opt-in). Only slugs bound on the rule are ever replaced; any other
  placeholder is left as sent and reported in ``unresolved``.

:class:`Redactor` replaces every injected value with ``[redacted]`` in text bound for logs and captures.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_LENGTH = 32
FORMAT_VERSION = 1
NONCE_BYTES = 12
KEY_CHECK_BYTES = 4
HEADER_BYTES = 1 + KEY_CHECK_BYTES + NONCE_BYTES
DEFAULT_SECRET_SETTING = "SWITCHYARD_SECRET_KEY"
_HKDF_SALT = b"switchyard credential vault"
_KEY_INFO = b"switchyard vault v1 aes-256-gcm key"
_CHECK_INFO = b"switchyard vault v1 key check"
_AAD_PREFIX = b"switchyard credential:"

PLACEHOLDER_RE = re.compile(r"\{\{switchyard:credential:([A-Za-z0-9][A-Za-z0-9._-]{0,127})\}\}")
_PLACEHOLDER_RE_BYTES = re.compile(PLACEHOLDER_RE.pattern.encode())
_PLACEHOLDER_MARK = "{{switchyard:credential:"
_MARK = _PLACEHOLDER_MARK.encode()
REDACTED = "[redacted]"


class VaultError(Exception):
    """Base class of the vault's errors; the message is fit for an admin."""


class VaultKeyError(VaultError):
    """The vault secret is missing or too short: no credential can be stored or used."""


class VaultDecryptError(VaultError):
    """A stored credential could not be decrypted (another secret, altered data, or an unknown format)."""


class UnknownCredentialError(VaultError):
    """A binding names a credential that does not exist."""

    def __init__(self, slug: str):
        self.slug = slug
        super().__init__(f"credential '{slug}' is bound to this route but does not exist")


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT, info=info).derive(secret)


def _aad(slug: str) -> bytes:
    return _AAD_PREFIX + slug.encode("utf-8")


class Vault:
    """Encrypts and decrypts credential values under a key derived from `secret`.

    `setting` is the name of the setting the secret comes from; it only appears in error messages.
    """

    __slots__ = ("_aesgcm", "_key_check", "setting")

    def __init__(self, secret: str | None, *, setting: str = DEFAULT_SECRET_SETTING):
        self.setting = setting
        if not secret:
            raise VaultKeyError(
                f"the credential vault is locked: set {setting} to a random secret of at least "
                f"{MIN_SECRET_LENGTH} characters (for example the output of `openssl rand -base64 48`)"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise VaultKeyError(
                f"{setting} is {len(secret)} characters long; the credential vault needs at least "
                f"{MIN_SECRET_LENGTH} (for example the output of `openssl rand -base64 48`)"
            )
        material = secret.encode("utf-8")
        self._aesgcm = AESGCM(_derive(material, _KEY_INFO, 32))
        self._key_check = _derive(material, _CHECK_INFO, KEY_CHECK_BYTES)

    def encrypt(self, plaintext: str, aad: str) -> bytes:
        """Encrypt a credential value; `aad` is the credential's slug and must be given again to decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aesgcm.encrypt(nonce, plaintext.encode("utf-8"), _aad(aad))
        return bytes([FORMAT_VERSION]) + self._key_check + nonce + sealed

    def decrypt(self, blob: bytes, aad: str) -> str:
        if len(blob) < HEADER_BYTES + 16 or blob[0] != FORMAT_VERSION:
            version = blob[0] if blob else None
            raise VaultDecryptError(
                f"credential '{aad}' is not in a format this version of Switchyard reads (format {version})"
            )
        if not hmac.compare_digest(blob[1 : 1 + KEY_CHECK_BYTES], self._key_check):
            raise VaultDecryptError(
                f"credential '{aad}' was encrypted with a different {self.setting}; restore the secret it was "
                f"created with, or enter the credential again"
            )
        nonce = blob[1 + KEY_CHECK_BYTES : HEADER_BYTES]
        try:
            plain = self._aesgcm.decrypt(nonce, blob[HEADER_BYTES:], _aad(aad))
        except InvalidTag:
            raise VaultDecryptError(
                f"credential '{aad}' failed its integrity check: the stored value was altered or belongs to "
                f"another credential"
            ) from None
        return plain.decode("utf-8")


@dataclass(frozen=True, slots=True)
class CredentialBinding:
    """Where one stored credential goes on an outbound request (stored as JSON on a rule or relay).

    * ``mode="header"``: set header `header` to `template` with ``{secret}`` replaced by the credential.
    * ``mode="placeholder"``: replace ``{{switchyard:credential:<credential>}}`` in the client's header values,
      and in its body too when `in_body` is true.
    """

    credential: str  # the credential's slug
    mode: Literal["header", "placeholder"] = "header"
    header: str = ""
    template: str = "{secret}"
    in_body: bool = False

    def problems(self) -> list[str]:
        """What is wrong with this binding, for the admin API's 4xx errors (empty when valid)."""
        out = []
        if not PLACEHOLDER_RE.fullmatch(placeholder(self.credential)):
            out.append(f"credential slug {self.credential!r} must be letters, digits, '.', '_' or '-'")
        if self.mode == "header":
            if not self.header or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", self.header):
                out.append(f"header binding needs a valid header name, got {self.header!r}")
            if "{secret}" not in self.template:
                out.append("header template must contain {secret}")
            if any(c in self.template for c in "\r\n\0"):
                out.append("header template cannot contain line breaks")
        return out


def placeholder(slug: str) -> str:
    """The placeholder a client sends to have credential `slug` substituted: ``{{switchyard:credential:slug}}``."""
    return f"{_PLACEHOLDER_MARK}{slug}}}}}"


class Redactor:
    """Replaces each of a set of secret values (and their JSON-escaped forms) with ``[redacted]``."""

    __slots__ = ("_pattern", "_pattern_bytes", "values")

    def __init__(self, values: Iterable[str] = ()):
        self.values = frozenset(v for v in values if v)
        variants = set(self.values) | {json.dumps(v)[1:-1] for v in self.values}
        ordered = sorted(variants, key=len, reverse=True)  # longest first: a secret containing another
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._pattern_bytes = re.compile(b"|".join(re.escape(v.encode()) for v in ordered)) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern is not None else text

    def redact_bytes(self, data: bytes) -> bytes:
        return self._pattern_bytes.sub(REDACTED.encode(), data) if self._pattern_bytes is not None else data

    def merged(self, other: Redactor) -> Redactor:
        return Redactor(self.values | other.values)


NO_REDACTION = Redactor()


@dataclass(frozen=True, slots=True)
class InjectionResult:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    injected: tuple[str, ...]  # slugs whose values went out, in first-use order: record these on the log row
    unresolved: tuple[str, ...]  # placeholder slugs the client sent that no binding allows
    redactor: Redactor


def apply_bindings(
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    bindings: Sequence[CredentialBinding],
    resolve_secret: Callable[[str], str],
) -> InjectionResult:
    """Apply `bindings` to an outbound request's headers (ASGI-style lower-case byte pairs) and body.

    `resolve_secret(slug)` returns the decrypted value, or raises ``KeyError`` (→ :class:`UnknownCredentialError`);
    it is called at most once per slug. Header bindings apply in order, so a later binding for the same header
    wins. A secret containing a line break is refused for a header (it would split the request).
    """
    secrets_by_slug: dict[str, str] = {}
    injected: dict[str, None] = {}
    unresolved: dict[str, None] = {}

    def secret_of(slug: str) -> str:
        if slug not in secrets_by_slug:
            try:
                secrets_by_slug[slug] = resolve_secret(slug)
            except KeyError:
                raise UnknownCredentialError(slug) from None
        return secrets_by_slug[slug]

    placeholder_slugs = {b.credential for b in bindings if b.mode == "placeholder"}
    body_slugs = {b.credential for b in bindings if b.mode == "placeholder" and b.in_body}

    def header_value(slug: str) -> bytes:
        value = secret_of(slug)
        if any(c in value for c in "\r\n\0"):
            raise VaultError(f"credential '{slug}' contains a line break and cannot be sent in a header")
        return value.encode("utf-8")

    def substitute(match: re.Match[bytes], allowed: set[str], in_header: bool) -> bytes:
        slug = match.group(1).decode("ascii")
        if slug not in allowed:
            unresolved[slug] = None
            return match.group(0)
        injected[slug] = None
        if in_header:
            return header_value(slug)
        return json.dumps(secret_of(slug))[1:-1].encode("utf-8")  # a body placeholder sits in a JSON string

    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if _MARK in value:
            value = _PLACEHOLDER_RE_BYTES.sub(lambda m: substitute(m, placeholder_slugs, True), value)
        out.append((name, value))

    for binding in bindings:
        if binding.mode != "header":
            continue
        name = binding.header.lower().encode("ascii")
        value = binding.template.encode("utf-8").replace(b"{secret}", header_value(binding.credential))
        out = [(n, v) for n, v in out if n.lower() != name]
        out.append((name, value))
        injected[binding.credential] = None

    if _MARK in body:
        body = _PLACEHOLDER_RE_BYTES.sub(lambda m: substitute(m, body_slugs, False), body)

    redactor = Redactor([secrets_by_slug[slug] for slug in injected]) if injected else NO_REDACTION
    return InjectionResult(out, body, tuple(injected), tuple(unresolved), redactor)
