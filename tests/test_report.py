"""The report is built from the run directory alone and every figure loads in a real browser."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthaug.cli import app
from synthaug.config import load_config
from synthaug.study.runner import run_study

SMALL = ["data.size=32", "data.phantom.n=80", "study.seeds=[0]", "study.real_fractions=[1.0]"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(load_config(None, SMALL), tmp_path_factory.mktemp("study") / "run").root


def test_report_has_sections_and_embeds_every_image(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    for section in ("Dataset audit and leakage", "Sample images", "Configuration and versions"):
        assert section in html
    assert html.count("<img ") >= 2 and html.count('src="data:image/png;base64,') == html.count("<img ")
    assert "http://" not in html and "https://" not in html  # self-contained


def test_report_command_rebuilds_from_run_directory_alone(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(copy)])
    assert res.exit_code == 0, res.output
    assert "Dataset audit" in (copy / "report.html").read_text()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "not-a-run")])
    assert res.exit_code == 2 and "synthaug run" in res.output


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless Chromium not found: install Debian's chromium and chromium-driver (scripts/test.sh does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is installed by the dev extra")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
    ):
        opts.add_argument(flag)  # fmt: skip
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_every_image_loads_in_headless_chromium(run_dir: Path) -> None:
    browser = _browser()
    try:
        browser.get((run_dir / "report.html").as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
        )
        title = browser.title
    finally:
        browser.quit()
    assert title.startswith("synthaug report")
    assert len(images) >= 2
    assert all(done and w > 0 and h > 0 for done, w, h in images), images
