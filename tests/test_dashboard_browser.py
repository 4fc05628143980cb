"""The dashboard in a real headless Chromium: log in, watch an agent join, chat, log out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.processes import ADMIN_TOKEN, ControlPlane
from tests.serving_fixtures import StartAgent

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get install -y chromium; .ci/run does it). Never 'playwright install'."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def log_in(page: Page, plane: ControlPlane) -> None:
    page.goto(plane.management_url + "/")
    expect(page).to_have_url(plane.management_url + "/login?next=/")
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("That is not the admin token.")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(plane.management_url + "/")


def test_dashboard_login_live_agent_playground_logout(
    browser: Browser, control_plane: ControlPlane, start_agent: StartAgent, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    log_in(page, control_plane)
    expect(page.locator("#agents")).to_contain_text("No agent connected.")

    start_agent("browser-agent", slots=2, wait=False)
    agent_row = page.locator('#agents tr[data-agent="browser-agent"]')
    expect(agent_row).to_be_visible()
    expect(agent_row).to_contain_text("ready")
    expect(page.locator("#pools .slots")).to_have_text("0 / 2")
    expect(page.locator("#add-agent-command")).to_contain_text(
        f"paddler agent --control-plane {control_plane.management_url} --token"
    )

    agent_row.locator("a").click()
    expect(page.locator("#agent-status")).to_contain_text("ready")
    expect(page.locator("#connections")).to_contain_text("still connected")

    page.click("text=Playground")
    expect(page.locator("#inference-url")).to_have_value(control_plane.inference_url)
    page.fill("#prompt", "Say hello.")
    page.fill("#max-tokens", "24")
    page.click("#send")
    expect(page.locator("#answer-status")).to_have_text("Done.")
    assert page.locator("#answer").inner_text().strip(), "no streamed text"

    page.click("text=Overview")
    expect(page.locator("#pools .slots")).to_have_text("0 / 2")
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    page.click("#logout")
    expect(page).to_have_url(control_plane.management_url + "/login")
    page.goto(control_plane.management_url + "/playground")
    expect(page).to_have_url(control_plane.management_url + "/login?next=/playground")
    assert (tmp_path / "overview.png").stat().st_size > 10_000
