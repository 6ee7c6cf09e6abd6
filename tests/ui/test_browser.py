"""The real UI in a real browser: `mlops serve ui` against the seeded platform
(tests/ui/conftest.py), every page opened by headless Chromium (Debian's `chromium`, driven by
playwright; scripts/ensure-tools.sh installs it). Each page must render without an exception,
with its title and its charts drawn; a full-page screenshot per page goes to test-output/ui/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from mlops_platform.local.postgres import free_port
from mlops_platform.ui import form as listing_form
from tests.ui.conftest import Platform

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "ui"
WAIT_S = 60  # per page: a first run imports SHAP/MLflow and reads every store
# The machine may have no outside network: no update checks, sync, QUIC or GPU probing.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The app is idle: connected to the server and no script run in progress.
IDLE = (
    '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
    '[data-test-script-state="notRunning"]'
)
BUSY = '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]'
CHART = '[data-testid="stVegaLiteChart"]'
VIEWPORT = {"width": 1400, "height": 900}

# (screenshot name, URL path Streamlit gives the st.Page file, page title, charts on the page)
PAGES = [
    ("predict", "/", "Predict a house price", 0),  # the waterfall appears after a prediction
    ("models", "/models", "Model history", 1),
    ("explainability", "/explainability", "What drives the model", 1),  # now vs. before
    ("data", "/data", "Data", 3),  # rows per batch, drift heatmap, API traffic
]


def chromium_executable() -> str:
    found = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    )
    if not found:
        pytest.fail("chromium is not installed: run scripts/ensure-tools.sh", pytrace=False)
    return found


@pytest.fixture(scope="module")
def ui_url(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlops serve ui` as a user starts it, on a free port, until the module ends."""
    port = free_port()
    mlops = Path(sys.executable).with_name("mlops")
    log = tmp_path_factory.mktemp("ui-server") / "streamlit.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(mlops), "serve", "ui", "--host", "127.0.0.1", "--port", str(port)],
            env=os.environ | platform.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the UI server exited ({process.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the UI server was not healthy after {WAIT_S}s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_executable()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_S * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()


def wait_rendered(page: Page, title: str, charts: int) -> None:
    """Until the script run is over, nothing is loading, the title shows and ``charts`` charts
    are drawn (vega-embed draws a canvas or an svg inside each chart element)."""
    expect(page.locator("h1").first).to_have_text(title, timeout=WAIT_S * 1000)
    page.wait_for_selector(IDLE, timeout=WAIT_S * 1000)
    expect(page.locator(BUSY)).to_have_count(0, timeout=WAIT_S * 1000)
    if charts:
        drawn = page.locator(f"{CHART} canvas, {CHART} svg.marks")
        expect(drawn.nth(charts - 1)).to_be_visible(timeout=WAIT_S * 1000)
    # Every chart element drew something with a size (an empty chart has no marks).
    for index in range(page.locator(CHART).count()):
        box = page.locator(f"{CHART} >> nth={index}").locator("canvas, svg.marks").first
        expect(box).to_be_visible()
        size = box.bounding_box()
        assert size, index
        assert size["width"] > 50, (index, size)
        assert size["height"] > 50, (index, size)


def assert_no_exception(page: Page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")
    assert "Traceback" not in page.inner_text("body")


def screenshot(page: Page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main area (the document itself never
    scrolls, so ``full_page`` alone shows one screen): grow the window to the content first."""
    height = page.evaluate(
        """() => Math.max(...Array.from(
            document.querySelectorAll('[data-testid="stMain"], [data-testid="stSidebarContent"]'),
            (element) => element.scrollHeight))"""
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    page.wait_for_selector(IDLE)
    # Two animation frames: the relayout (charts keep their width) is painted.
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.mark.parametrize(("name", "path", "title", "charts"), PAGES, ids=[p[0] for p in PAGES])
def test_page_renders(
    page: Page, ui_url: str, name: str, path: str, title: str, charts: int
) -> None:
    page.goto(ui_url + path)
    wait_rendered(page, title, charts)
    assert_no_exception(page)
    assert page.locator(CHART).count() >= charts
    assert page.url.rstrip("/") == (ui_url + path).rstrip("/")
    screenshot(page, name if name != "predict" else "predict-form")


def test_predict_form_prices_a_listing(page: Page, ui_url: str, platform: Platform) -> None:
    entered = {"bed": 4, "city": "Miami", "state": "Florida"}
    page.goto(ui_url + "/")
    wait_rendered(page, "Predict a house price", 1)  # the example listing is priced on open
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Predicted price")
    shown = metric.locator('[data-testid="stMetricValue"]')
    before = shown.inner_text().strip()
    assert before.startswith("$"), before
    form = page.locator('[data-testid="stForm"]')
    bedrooms = form.get_by_label("Bedrooms", exact=True)
    bedrooms.fill(str(entered["bed"]))
    city = form.get_by_label("City *", exact=True)
    city.fill(entered["city"])
    state = form.get_by_label("State *", exact=True)
    state.click()  # a searchable select (default Texas): type, then pick the option
    page.keyboard.type(entered["state"])
    page.get_by_role("option", name=entered["state"], exact=True).click()
    form.get_by_role("button", name="Predict price").click()

    expect(shown).not_to_have_text(before, timeout=WAIT_S * 1000)  # the new listing's price
    wait_rendered(page, "Predict a house price", 1)  # the SHAP waterfall
    assert_no_exception(page)
    expect(page.get_by_text("Why this price")).to_be_visible()
    value = shown.inner_text().strip()
    assert re.fullmatch(r"\$\d{1,3}(,\d{3})*", value), value
    assert int(value[1:].replace(",", "")) > 1000, value
    # The form keeps what was entered, and the price is the API's for exactly that listing.
    expect(bedrooms).to_have_value(str(entered["bed"]))
    expect(city).to_have_value(entered["city"])
    expect(state).to_have_value(entered["state"])
    record = listing_form.to_record(listing_form.defaults() | entered)
    answer = httpx.post(f"{platform.settings.api_url}/predict", json=record, timeout=30)
    answer.raise_for_status()
    assert value == f"${answer.json()['predictions'][0]:,.0f}", (value, answer.json())
    screenshot(page, "predict")
