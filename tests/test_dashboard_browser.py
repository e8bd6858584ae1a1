"""The dashboard at ``/`` in a real browser (Debian's Chromium through Playwright) on the shared
e2e stack: every card fills from the API (or says "not available" when its route is not served
by this gateway), no console errors, a full-page screenshot is kept as a test artefact
(``$STEVIE_TEST_ARTEFACTS``, default ``.artefacts/`` in the repo)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from stevie.services.gateway.dashboard import CARDS

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTEFACTS = Path(os.environ.get("STEVIE_TEST_ARTEFACTS", Path(__file__).resolve().parents[1] / ".artefacts"))

_STATES = (
    "() => Object.fromEntries([...document.querySelectorAll('.card')].map(c => [c.dataset.card, c.dataset.state]))"
)


def _served(stack) -> set[str]:
    """Card names whose first source route this gateway serves (per its OpenAPI document)."""
    status, doc = stack.get("/api/openapi.json")
    assert status == 200
    paths = set(doc["paths"])
    return {
        c.name for c in CARDS if c.sources[0].template in paths or c.sources[0].template.startswith("/api/dashboard/")
    }


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install chromium)")
def test_dashboard_cards_fill_in_a_real_browser(e2e_stack):
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    served = _served(e2e_stack)
    # the cards fed by this issue's own routes and the scaffold's must be there
    assert {"router", "risk", "book", "pnl", "venues", "health"} <= served, served
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2200})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(e2e_stack.url + "/", wait_until="domcontentloaded")
            assert page.title().startswith("Stevie")
            # every card leaves 'loading' (lazy: all are in view at this viewport) ...
            try:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.card')].every(c => c.dataset.state !== 'loading')",
                    timeout=60_000,
                )
            except Exception as exc:
                raise AssertionError(f"cards still loading after 60 s: {page.evaluate(_STATES)}; {errors}") from exc
            # ... and within two minutes every served card shows data (decisions and fills
            # start on their own within a minute of replay), the others say "not available".
            deadline = time.monotonic() + 120
            states: dict[str, str] = {}
            while time.monotonic() < deadline:
                states = page.evaluate(_STATES)
                pnl_points = page.locator("#card-pnl svg.line").count()
                if all(states[n] == "ok" for n in served) and pnl_points:
                    break
                page.wait_for_timeout(1000)
            shot = ARTEFACTS / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert all(states[n] == "ok" for n in served), f"cards without data: {states}"
            for name in set(states) - served:
                assert states[name] == "unavailable", (name, states[name])
                assert "not available" in page.locator(f"#card-{name} .body").inner_text()
            # real content, not placeholders
            assert page.locator("#card-book table.ladder tr.bid").count() == 10
            assert page.locator("#card-book table.ladder tr.ask").count() == 10
            assert page.locator("#card-venues table.grid tr").count() >= 5  # header + 4 venue×symbol rows
            assert "binance-usdm" in page.locator("#card-venues").inner_text()
            assert page.locator("#card-health ul.svc li.up").count() >= 10
            assert page.locator("#card-router p.big").inner_text().startswith("p_")
            assert pnl_points == 1
            pbt = page.locator("#card-pbt .body").inner_text()  # a population's lineage, or how to get one
            assert ("no PBT run yet" in pbt and "stevie pbt" in pbt) or "best score per generation" in pbt, pbt
            # the venue picker reloads the ladder from the other venue's book
            page.select_option("#card-book select[name=venue]", "binance-usdm")
            page.wait_for_function(
                "() => document.querySelector('#card-book .body').innerText.includes('binance-usdm')", timeout=15_000
            )
            assert shot.stat().st_size > 20_000
        finally:
            browser.close()
    assert errors == [], errors
