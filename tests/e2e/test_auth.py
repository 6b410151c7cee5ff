"""Signing in to the dashboard: first-visit sign-up, password sign-in and sign-out, passkeys, and the guard that
sends every visitor without a session to /login."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.e2e.conftest import PASSWORD, USERNAME, sign_in_form


def test_the_first_visit_creates_the_admin_account_and_sign_up_closes_after_it(account, server, anonymous):
    assert account.first_visit_title == "Create the admin account"
    assert account.landed_on.rstrip("/") == server.base_url  # straight to the dashboard, signed in
    assert httpx.get(server.base_url + "/api/auth/status", timeout=5).json()["signup_open"] is False
    view = anonymous()
    view.open("/login")
    expect(view.page.locator("#login-title")).to_have_text("Sign in")
    expect(view.page.locator("#passkey-sign-in")).to_be_visible()
    view.screenshot("login-1280")
    assert view.problems == []


def test_a_visit_without_a_session_goes_to_login_and_back_after_signing_in(anonymous, account):
    view = anonymous()
    view.open("/keys")
    view.page.wait_for_url(re.compile(r"/login\?next=/keys"))
    expect(view.page.get_by_role("heading", name="API keys")).to_have_count(0)  # nothing of the page was shown
    sign_in_form(view, USERNAME, PASSWORD)
    view.page.wait_for_url(re.compile(r"/keys/?$"))
    expect(view.page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    assert view.problems == []


def test_a_wrong_password_is_refused(anonymous, server, account):
    view = anonymous()
    view.open("/login")
    expect(view.page.locator("#login-title")).to_have_text("Sign in")
    sign_in_form(view, USERNAME, "not the password")
    expect(view.page.get_by_role("alert")).to_contain_text("Wrong username or password")
    assert "/login" in view.page.url
    assert not [c for c in view.page.context.cookies() if c["name"] == "switchyard_session"]
    # the only problem the browser saw is the refused sign-in itself
    assert [p for p in view.problems if "/api/auth/login" not in p and "401" not in p] == []


def test_sign_out_ends_the_session_and_sign_in_starts_a_new_one(anonymous, account):
    view = anonymous()
    view.open("/login")
    sign_in_form(view, USERNAME, PASSWORD)  # a session of its own: signing out must not end the shared one
    page = view.page
    expect(page.locator("#signed-in-user")).to_have_text(USERNAME)
    page.locator("[data-action='sign-out']").first.click()
    page.wait_for_url(re.compile(r"/login"))
    expect(page.locator("#login-title")).to_have_text("Sign in")
    assert not [c for c in page.context.cookies() if c["name"] == "switchyard_session" and c["value"]]

    view.open("/models")
    page.wait_for_url(re.compile(r"/login\?next=/models"))
    sign_in_form(view, USERNAME, PASSWORD)
    page.wait_for_url(re.compile(r"/models/?$"))
    expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
    assert view.problems == []


def test_a_passkey_registered_in_settings_signs_in(anonymous, server, account):
    """Through Chromium's virtual authenticator (WebAuthn needs a host name, so the page is on localhost)."""
    origin = server.base_url.replace("127.0.0.1", "localhost")
    view = anonymous(base_url=origin)
    page = view.page
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    view.open("/login")
    sign_in_form(view, USERNAME, PASSWORD)
    expect(page.locator("#signed-in-user")).to_have_text(USERNAME)
    view.open("/settings")
    page.locator("#passkey-name").fill("virtual key")
    page.locator("#add-passkey").click()
    expect(page.locator("[data-passkey='virtual key']")).to_be_visible()

    page.locator("[data-action='sign-out']").first.click()
    page.wait_for_url(re.compile(r"/login"))
    expect(page.locator("#passkey-sign-in")).to_be_visible()
    page.locator("#passkey-sign-in").click()
    page.wait_for_url(origin + "/")
    expect(page.locator("#signed-in-user")).to_have_text(USERNAME)
    assert view.problems == []
