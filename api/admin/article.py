"""`GET /api/article?url=`: the readable text of a public web page, for the playground's read-aloud.

The gateway fetches a URL a user typed, so it must not become a way into the network it sits in (SSRF).
Every hop — the first request and each redirect, followed by hand — is checked the same way: the host name
is resolved here, every address it resolves to must be public, and the connection then goes to the address
that was checked (the host name still travels in `Host` and in TLS SNI, and the certificate is verified
against it). A name that resolves to a public address for the check and to a private one for the connection
(DNS rebinding) therefore gets nowhere. Refused: loopback, private (RFC 1918, unique local), link-local,
carrier-grade NAT, multicast, reserved and unspecified addresses, and cloud metadata endpoints.

``SWITCHYARD_ARTICLE_ALLOW_PRIVATE=true`` lifts the refusal of loopback, private and link-local addresses, for
tests and for a gateway that should read pages on its own LAN; metadata endpoints stay refused even then.

The download is capped in size and time; only HTML is read, and the text is extracted with goose3 (in a
thread: it is CPU work). Errors say what went wrong: 400 for a URL that is refused or malformed, 413 too
large, 415 not HTML, 422 no readable text, 502 the site failed or answered an error, 504 too slow.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import httpx
import msgspec
from litestar import Request, get
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from api.admin.deps import get_runtime

MAX_BYTES = 5 * 1024 * 1024
TIMEOUT_SECONDS = 15.0
MAX_REDIRECTS = 5
USER_AGENT = "Mozilla/5.0 (compatible; Switchyard article reader)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "fd00:ec2::23")
)
"""Cloud instance metadata services (AWS, ECS, Alibaba, AWS IPv6): refused whatever the settings say."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class ArticleError(Exception):
    """Why a page could not be read, with the HTTP status the API answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Article(msgspec.Struct):
    url: str  # after redirects
    title: str
    paragraphs: list[str]


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the fetcher may connect to."""

    allow_private: bool = False

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused (None when it may be used)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if address.is_unspecified:
            return "an unspecified address"
        if address.is_multicast:
            return "a multicast address"
        if self.allow_private and (address.is_loopback or address.is_private or address.is_link_local):
            return None
        if address.is_loopback:
            return "a loopback address"
        if address.is_link_local:
            return "a link-local address"
        if address.is_private:
            return "a private address"
        if not address.is_global:
            return "not a public address"
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ArticleFetcher:
    """Fetches one page with the SSRF checks above on every hop, and extracts its text."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        max_bytes: int = MAX_BYTES,
        timeout: float = TIMEOUT_SECONDS,
        max_redirects: int = MAX_REDIRECTS,
        resolver: Resolver = system_resolver,
    ):
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.resolver = resolver

    async def fetch(self, url: str) -> Article:
        try:
            async with asyncio.timeout(self.timeout):
                final_url, html = await self._download(url)
        except TimeoutError:
            raise ArticleError(504, f"the page did not arrive within {self.timeout:g} s") from None
        title, paragraphs = await asyncio.to_thread(extract_text, html)
        if not paragraphs:
            raise ArticleError(422, "no readable article text was found on that page")
        return Article(url=final_url, title=title, paragraphs=paragraphs)

    async def _download(self, url: str) -> tuple[str, str]:
        try:
            return await self._follow(url)
        except httpx.TimeoutException:
            raise ArticleError(504, f"the page did not arrive within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ArticleError(502, f"the site could not be reached: {exc or type(exc).__name__}") from None

    async def _follow(self, url: str) -> tuple[str, str]:
        # trust_env=False: a proxy from the environment would connect by name and undo the address check
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=self.timeout) as client:
            for _ in range(self.max_redirects + 1):
                target = self._parse(url)
                address = await self._checked_address(target)
                async with client.stream(
                    "GET",
                    target.copy_with(host=address),
                    headers={
                        "Host": target.netloc.decode("ascii"),
                        "User-Agent": USER_AGENT,
                        "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
                    },
                    extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
                ) as response:
                    if response.status_code in REDIRECTS and response.headers.get("location"):
                        url = str(target.join(response.headers["location"]))
                        continue
                    return str(target), await self._read_html(response)
        raise ArticleError(502, f"more than {self.max_redirects} redirects")

    @staticmethod
    def _parse(url: str) -> httpx.URL:
        try:
            target = httpx.URL(url.strip())
        except (httpx.InvalidURL, ValueError) as exc:
            raise ArticleError(400, f"not a URL: {exc}") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise ArticleError(400, "only http:// and https:// URLs with a host name can be read")
        if target.userinfo:
            raise ArticleError(400, "URLs with a user name or password are not fetched")
        return target

    async def _checked_address(self, target: httpx.URL) -> str:
        """The address to connect to: every address the host resolves to must be allowed."""
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            addresses = await self.resolver(target.host, port)
        except (OSError, UnicodeError) as exc:
            raise ArticleError(502, f"cannot resolve {target.host}: {exc}") from None
        if not addresses:
            raise ArticleError(502, f"{target.host} has no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            reason = self.policy.refusal(address)
            if reason is not None:
                raise ArticleError(400, f"refusing to fetch {target.host}: it resolves to {reason} ({address})")
        return addresses[0].split("%", 1)[0]

    async def _read_html(self, response: httpx.Response) -> str:
        if response.status_code >= 400:
            raise ArticleError(502, f"the page answered {response.status_code} {response.reason_phrase}".rstrip())
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in HTML_TYPES:
            raise ArticleError(415, f"not an HTML page (content type {media_type or 'unknown'})")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ArticleError(413, f"the page is larger than {self.max_bytes // (1024 * 1024)} MiB")
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():  # decoded: the cap also holds for compressed bodies
                body += chunk
                if len(body) > self.max_bytes:
                    raise ArticleError(413, f"the page is larger than {self.max_bytes // (1024 * 1024)} MiB")
        except httpx.HTTPError as exc:
            raise ArticleError(502, f"the download failed: {exc}") from None
        return decode_html(bytes(body), response.headers.get("content-type", ""))


_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def decode_html(data: bytes, content_type: str) -> str:
    """Text of an HTML body: the header's charset, else the page's <meta charset>, else UTF-8."""
    charset = ""
    match = re.search(r"charset=([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
    if match:
        charset = match.group(1)
    elif found := _CHARSET.search(data[:4096]):
        charset = found.group(1).decode("ascii", "ignore")
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def extract_text(html: str) -> tuple[str, list[str]]:
    """(title, paragraphs) of the main text of a page, by goose3; never fetches anything itself."""
    from goose3 import Goose

    with Goose({"enable_image_fetching": False, "http_timeout": 1}) as goose:
        article = goose.extract(raw_html=html)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n|\n", article.cleaned_text or "")]
    return (article.title or "").strip(), [p for p in paragraphs if p]


@get("/api/article", tags=["playground"], summary="Readable paragraphs of a public web page (for read-aloud)")
async def read_article(
    request: Request,
    url: Annotated[str, Parameter(description="an http(s) URL of a public web page", max_length=4096)],
) -> Article:
    settings = get_runtime(request).settings
    fetcher = ArticleFetcher(AddressPolicy(allow_private=settings.article_allow_private))
    try:
        return await fetcher.fetch(url)
    except ArticleError as exc:
        raise HTTPException(status_code=exc.status, detail=exc.message) from None
