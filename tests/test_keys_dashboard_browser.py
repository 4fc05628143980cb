"""The dashboard's key pages in a real headless Chromium: make a key through the form, see and
copy its secret once, find it in the list, revoke it."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Browser, expect

from tests.processes import ADMIN_HEADERS, ControlPlane
from tests.test_dashboard_browser import TIMEOUT_MS, browser, log_in

__all__ = ["browser"]  # the fixture, shared with the other dashboard test


def test_create_a_key_see_its_secret_once_and_revoke_it(
    browser: Browser, control_plane: ControlPlane
) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    log_in(page, control_plane)
    page.click('header a:text-is("Keys")')
    expect(page.locator("h1")).to_have_text("API keys")
    expect(page.locator("#keys")).to_contain_text("No API key yet.")

    page.fill("#name", "browser key")
    page.fill("#requests_per_minute", "-1")
    page.click("#create-key")
    expect(page.locator('[data-error-for="name"]')).to_be_visible()
    expect(page.locator('[data-error-for="requests_per_minute"]')).to_contain_text("1")

    page.fill("#name", "browser-key")
    page.fill("#team", "web")
    page.fill("#models", "tiny, other")
    page.fill("#requests_per_minute", "30")
    page.select_option("#priority", "high")
    page.click("#create-key")
    expect(page.locator("h1")).to_have_text("Key browser-key")
    expect(page.locator("#new-secret")).to_contain_text("shown only this once")
    secret = page.locator("#secret").inner_text()
    assert re.fullmatch(r"sk-pfp-[A-Za-z0-9_-]{40}", secret)
    page.click("#copy-secret")
    expect(page.locator("#copy-secret")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    key = httpx.get(
        control_plane.management_url + "/api/v1/keys/browser-key", headers=ADMIN_HEADERS
    ).json()
    assert (key["prefix"], key["team"], key["priority"]) == (secret[:12], "web", "high")
    assert (key["models"], key["requests_per_minute"]) == (["tiny", "other"], 30)

    page.click('a:text-is("All keys")')
    row = page.locator('#keys tr[data-key="browser-key"]')
    expect(row.locator(".status")).to_have_text("active")
    expect(row).to_contain_text(secret[:12])
    assert secret not in page.content(), "the secret is shown only once"
    page.reload()
    assert secret not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.revoke").click()
    expect(page.locator("h1")).to_have_text("Key browser-key")
    expect(page.locator("#key .status")).to_have_text("revoked")
    expect(page.locator("#revoked-at")).to_be_visible()
    expect(page.locator("#revoke-key")).to_have_count(0)
    assert secret not in page.content()
    svg_bars = page.locator("#usage-chart rect.bar")
    expect(svg_bars).to_have_count(48)

    revoked = httpx.get(
        control_plane.management_url + "/api/v1/keys/browser-key", headers=ADMIN_HEADERS
    ).json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    context.close()
