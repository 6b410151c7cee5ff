"""`GET /api/article`: readable text of a web page for the playground, without becoming a way into the local network.

A local HTTP server stands in for the web. Being on loopback, it is exactly what the endpoint must refuse,
so the tests that read it run a gateway with ``SWITCHYARD_ARTICLE_ALLOW_PRIVATE=true`` (the setting for tests
and LANs); the refusals are checked on a gateway without it, and on every redirect hop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from api.admin.article import AddressPolicy, ArticleError, ArticleFetcher
from tests.servers import ADMIN_HEADERS, GatewayProcess

ARTICLE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Night trains return</title></head>
<body><nav>Home | News | About</nav><article><h1>Night trains return</h1>
<p>After years of decline, sleeper trains are crossing Europe again, and tickets sell out weeks in advance.</p>
<p>Operators say travellers choose them to avoid airports, and because a night on a train saves a hotel room.</p>
<p>Rail companies are ordering new carriages, but supply will not catch up with demand before the next decade.</p>
</article><footer>Copyright The Daily Test</footer></body></html>"""


class Site(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Site.paths.append(self.path)
        if self.path == "/article":
            self._send(200, "text/html; charset=utf-8", ARTICLE)
        elif self.path == "/moved":
            self._redirect("/article")
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/to-localhost":
            self._redirect(f"http://localhost:{self.server.server_address[1]}/article")
        elif self.path == "/image":
            self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        elif self.path == "/big":
            self._send(200, "text/html", b"<html><body><p>" + b"words " * 50_000 + b"</p></body></html>")
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, "text/html", ARTICLE)
        elif self.path == "/empty":
            self._send(200, "text/html", b"<html><body></body></html>")
        else:
            self._send(404, "text/plain", b"not here")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher gave up on a slow or oversized page, as it should

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("location", location)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def visits() -> list[str]:
    Site.paths.clear()
    return Site.paths


def article(gateway, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(
        gateway.base_url + "/api/article", params={"url": url}, headers=ADMIN_HEADERS if headers is None else headers,
        timeout=30,
    )  # fmt: skip


def start_gateway(workdir, env: dict[str, str] | None = None) -> Iterator[GatewayProcess]:
    workdir.mkdir()
    gateway = GatewayProcess(workdir, "models: {}\n", env).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def strict_gateway(tmp_path_factory) -> Iterator[GatewayProcess]:
    yield from start_gateway(tmp_path_factory.mktemp("article") / "strict")


@pytest.fixture(scope="module")
def lan_gateway(tmp_path_factory) -> Iterator[GatewayProcess]:
    yield from start_gateway(tmp_path_factory.mktemp("article") / "lan", {"SWITCHYARD_ARTICLE_ALLOW_PRIVATE": "true"})


def test_an_article_is_read_into_its_title_and_paragraphs(lan_gateway, site):
    response = article(lan_gateway, f"{site}/moved")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "Night trains return"
    assert body["url"] == f"{site}/article"  # where the redirect led
    assert len(body["paragraphs"]) == 3
    assert body["paragraphs"][0].startswith("After years of decline")
    assert not any("Copyright" in p or "Home |" in p for p in body["paragraphs"])


def test_loopback_is_refused_before_anything_is_fetched(strict_gateway, site, visits):
    response = article(strict_gateway, f"{site}/article")
    assert response.status_code == 400
    assert "loopback" in response.json()["detail"]
    assert visits == []


def test_names_are_checked_after_resolving_them(strict_gateway, site, visits):
    port = site.rsplit(":", 1)[1]
    response = article(strict_gateway, f"http://localhost:{port}/article")
    assert response.status_code == 400
    assert "refusing to fetch localhost: it resolves to a loopback address" in response.json()["detail"]
    assert visits == []


def test_every_redirect_hop_is_checked(lan_gateway, site, visits):
    response = article(lan_gateway, f"{site}/to-metadata")
    assert response.status_code == 400
    assert "cloud metadata address (169.254.169.254)" in response.json()["detail"]
    assert visits == ["/to-metadata"]  # the hop to the metadata service never left the gateway


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/image", 415, "not an HTML page (content type image/png)"),
        ("/missing", 502, "the page answered 404"),
        ("/empty", 422, "no readable article text"),
    ],
)
def test_pages_that_cannot_be_read_say_why(lan_gateway, site, path, status, words):
    response = article(lan_gateway, site + path)
    assert response.status_code == status
    assert words in response.json()["detail"]


@pytest.mark.parametrize("url", ["ftp://example.com/file", "file:///etc/passwd", "http://user:pw@example.com/"])
def test_only_plain_http_urls_are_fetched(lan_gateway, url):
    response = article(lan_gateway, url)
    assert response.status_code == 400


def test_the_endpoint_belongs_to_the_admin_api(strict_gateway, site):
    assert article(strict_gateway, f"{site}/article", headers={}).status_code == 401


# --------------------------------------------------------------------------- the fetcher's limits, in process


def resolving_to(*addresses: str):
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def test_a_page_larger_than_the_cap_is_refused(site):
    fetcher = ArticleFetcher(AddressPolicy(allow_private=True), max_bytes=64 * 1024)
    with pytest.raises(ArticleError) as refused:
        await fetcher.fetch(f"{site}/big")
    assert refused.value.status == 413


async def test_a_slow_page_runs_into_the_time_cap(site):
    fetcher = ArticleFetcher(AddressPolicy(allow_private=True), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ArticleError) as slow:
        await fetcher.fetch(f"{site}/slow")
    assert slow.value.status == 504 and "within 0.5 s" in slow.value.message
    assert time.monotonic() - started < 1.5


async def test_a_public_name_with_one_private_address_is_refused(site, visits):
    """A name whose addresses mix public and private ones (DNS rebinding) is refused before connecting."""
    port = site.rsplit(":", 1)[1]
    fetcher = ArticleFetcher(AddressPolicy(), resolver=resolving_to("93.184.216.34", "10.0.0.7"))
    with pytest.raises(ArticleError) as refused:
        await fetcher.fetch(f"http://news.example:{port}/article")
    assert refused.value.status == 400 and "a private address (10.0.0.7)" in refused.value.message
    assert visits == []


async def test_the_connection_goes_to_the_address_that_was_checked(site, visits):
    """The host name is only a name: the fetcher connects to the resolved address and sends the name as Host."""
    port = site.rsplit(":", 1)[1]
    fetcher = ArticleFetcher(AddressPolicy(allow_private=True), resolver=resolving_to("127.0.0.1"))
    page = await fetcher.fetch(f"http://news.example:{port}/article")
    assert page.title == "Night trains return"
    assert visits == ["/article"]


@pytest.mark.parametrize(
    ("address", "allowed_on_a_lan"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("192.168.0.10", True),
        ("fe80::1", True),
        ("::ffff:127.0.0.1", True),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_address_policy(address, allowed_on_a_lan):
    import ipaddress

    ip = ipaddress.ip_address(address)
    assert AddressPolicy().refusal(ip) is not None  # never for a gateway on the internet
    assert (AddressPolicy(allow_private=True).refusal(ip) is None) == allowed_on_a_lan
    assert AddressPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None
