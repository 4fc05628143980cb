"""The dashboard in a real headless Chromium: log in, watch an agent join, chat, swap the
pool's model through its form, log out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agent.engine.cpu_path import CpuFeatures
from tests.file_server import FileServer
from tests.processes import ADMIN_TOKEN, ControlPlane, wait_until
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


def long_request(plane: ControlPlane, pool: str, statuses: list[int]) -> threading.Thread:
    """A chat that runs a few seconds (end-of-text tokens banned), recording its status."""

    def run() -> None:
        body = {
            "model": pool,
            "messages": [{"role": "user", "content": "Tell me about paddles."}],
            "max_tokens": 120,
            "logit_bias": {"0": -100, "1": -100, "2": -100},
        }
        response = httpx.post(plane.inference_url + "/v1/chat/completions", json=body, timeout=90)
        statuses.append(response.status_code)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def swap_the_model_through_the_form(
    page: Page, plane: ControlPlane, pool: str, tiny_model_path: Path
) -> None:
    """Bad template rejected inline; then a new model (downloaded slowly) while a request runs:
    the agent goes draining -> loading -> ready with the new model, the request succeeds."""
    page.click(f'#pools a:text-is("{pool}")')
    expect(page.locator("h1")).to_have_text(f"Pool {pool}")
    page.fill("#chat_template", "{{ unclosed")
    page.click("#save-desired-state")
    expect(page.locator('[data-error-for="chat_template"]')).to_contain_text("chat_template")
    expect(page.locator("#chat_template")).to_have_value("{{ unclosed")
    page.fill("#chat_template", "")

    statuses: list[int] = []
    with FileServer({"tiny.gguf": tiny_model_path.read_bytes()}, bytes_per_second=200_000) as files:
        request = long_request(plane, pool, statuses)

        def busy() -> bool:
            agent = plane.agent("browser-agent")
            return agent is not None and agent["slots_busy"] >= 1

        wait_until(busy, timeout=30, what="the long request dispatched")
        page.fill("#model_source", files.url("tiny.gguf"))
        page.fill("#inference_defaults\\.temperature", "0.5")
        page.click("#save-desired-state")
        expect(page.locator("#saved")).to_contain_text("version 1")
        state = page.locator('#pool-agents tr[data-agent="browser-agent"] .state')
        expect(state).to_have_text("draining")
        expect(state).to_have_text("loading")
        expect(state).to_have_text("ready")
        model = page.locator('#pool-agents tr[data-agent="browser-agent"] .model')
        expect(model).to_have_text("tiny")  # the downloaded file's stem
        request.join(90)
    assert statuses == [200]


def test_dashboard_login_live_agent_playground_logout(
    browser: Browser,
    control_plane: ControlPlane,
    start_agent: StartAgent,
    tmp_path: Path,
    tiny_model_path: Path,
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
    expect(page.locator("#agent-cpu-path")).to_contain_text("weights in CPU_Mapped")
    expect(page.locator("#agent-cpu-features")).to_have_text(
        " ".join(CpuFeatures.of_this_machine().reported) or "baseline (no AVX2)"
    )
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
    pool = control_plane.pools()[0]["name"]
    swap_the_model_through_the_form(page, control_plane, pool, tiny_model_path)

    page.click("#logout")
    expect(page).to_have_url(control_plane.management_url + "/login")
    page.goto(control_plane.management_url + "/playground")
    expect(page).to_have_url(control_plane.management_url + "/login?next=/playground")
    assert (tmp_path / "overview.png").stat().st_size > 10_000
