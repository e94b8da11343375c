"""The report is built from the run directory alone and every figure loads in a real browser."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synthaug.cli import app
from synthaug.config import load_config
from synthaug.io import read_json
from synthaug.study.runner import run_study
from tests.test_quality_stage import trust_run

SMALL = ["data.size=32", "data.phantom.n=80", "study.seeds=[0]", "study.real_fractions=[1.0]"]
TRUST_SECTIONS = ("Synthetic image quality", "Memorization", "Train on synthetic, test on real", "Filtering")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_study(load_config(None, SMALL), tmp_path_factory.mktemp("study") / "run").root


@pytest.fixture(scope="module")
def trust_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study with three synthetic banks, measured and explained (test_quality_stage.py), moved, re-reported."""
    copy = tmp_path_factory.mktemp("trust") / "moved"
    shutil.copytree(trust_run(tmp_path_factory), copy)
    res = CliRunner().invoke(app, ["report", str(copy)])
    assert res.exit_code == 0, res.output
    return copy


def test_report_has_sections_and_embeds_every_image(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    for section in ("Dataset audit and leakage", "Sample images", "Approaches and findings"):
        assert section in html
    # the answer comes first: the summary is the first section, naming its primary metric
    assert html.index("<section id=") == html.index('<section id="summary">')
    assert "Primary metric" in html
    assert "Configuration, versions and wall times" in html and "wall time (s, all attempts)" in html
    # every stage before the report has its wall time recorded (the report's own counts from the next build)
    times = read_json(run_dir / "timings.json")
    assert {"audit", "splits", "generators", "classifiers", "statistics", "report"} <= set(times)
    assert all(t["seconds"] >= 0 and t["runs"] == 1 for t in times.values())
    assert "<td>classifiers</td>" in html
    assert not any(f"<h2>{s}</h2>" in html for s in TRUST_SECTIONS)  # no generators: no synthetic-image sections
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


def _loaded_images(report: Path) -> list[list[Any]]:
    """[complete, naturalWidth, naturalHeight] of every image once headless Chromium has opened the report."""
    browser = _browser()  # skips the test without Chromium or selenium
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        browser.get(report.as_uri())
        # On a busy CPU the parser may still be working through megabytes of data URIs: wait for the end.
        WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
        )
        assert browser.title.startswith("synthaug report")
    finally:
        browser.quit()
    assert len(images) == report.read_text().count("<img ")  # the browser saw every image of the file
    return images


def test_every_image_loads_in_headless_chromium(run_dir: Path) -> None:
    images = _loaded_images(run_dir / "report.html")
    assert len(images) >= 2
    assert all(done and w > 0 and h > 0 for done, w, h in images), images


def test_report_shows_quality_memorization_tstr_filtering_and_gradcam(trust_dir: Path) -> None:
    html = (trust_dir / "report.html").read_text()
    for section in (*TRUST_SECTIONS, "Grad-CAM"):
        assert f"<h2>{section}</h2>" in html
    assert "encoder:cnn@f1_s0" in html  # the feature network is named
    for bank in ("copies", "heldout", "vae"):
        assert f"Bank {bank} (real fraction 1, seed 0)" in html  # a sample grid per bank
        assert f"Grad-CAM of cnn · none · fraction 1, seed 0 on real test images (left) and {bank} images" in html
        assert f"<figcaption>{bank} (fraction 1, seed 0): synthetic images (top) above their nearest training" in html
    assert "real (TRTR)" in html and "copies (TSTR)" in html and "confidence ≥ 0.9, not memorized" in html
    # real grid, class counts, strip plot, confusion, curves + 3 bank grids, 3 pair strips, 3 Grad-CAM panels
    assert html.count("<img ") >= 5 + 9 and html.count('src="data:image/png;base64,') == html.count("<img ")
    assert "http://" not in html and "https://" not in html


def test_every_image_of_the_synthetic_sections_loads_in_headless_chromium(trust_dir: Path) -> None:
    images = _loaded_images(trust_dir / "report.html")
    assert len(images) >= 14
    assert all(done and w > 0 and h > 0 for done, w, h in images), images


EVIL = "<img src=x onerror=document.title='pwned'>"


def test_class_names_from_folders_render_as_text_in_the_browser(tmp_path: Path) -> None:
    """A class folder named like an HTML tag shows as text everywhere in the report (no element, no script)."""
    from synthaug.data.phantoms import generate
    from synthaug.data.prepare import write_image_folder

    root = tmp_path / "data"
    write_image_folder(generate(60, 16, seed=2), root)
    for split in ("Training", "Testing", "masks/Training", "masks/Testing"):
        (root / split / "glioma").rename(root / split / EVIL)
    sets = ["data.size=16", "study.seeds=[0]", "study.workers=1", "train.epochs=1", "quality.enabled=false"]
    sets += ['study.policies=[[], ["classical:p=0.5"]]', f"data.source={root}", f"data.cache_dir={tmp_path / 'c'}"]
    run = run_study(load_config(None, sets), tmp_path / "run")
    html = (run.root / "report.html").read_text()
    assert "&lt;img src=x onerror=" in html and EVIL not in html
    browser = _browser()
    try:
        browser.get((run.root / "report.html").as_uri())
        sources = browser.execute_script("return Array.from(document.images).map(i => i.getAttribute('src'));")
        assert browser.title.startswith("synthaug report") and "x" not in sources
        assert EVIL in browser.execute_script("return document.body.innerText;")  # shown as text
    finally:
        browser.quit()


WIDTH_JS = """
const W = document.documentElement.clientWidth;
const wide = [];
for (const e of document.querySelectorAll('body *')) {
  const r = e.getBoundingClientRect();
  const scrolls = e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible';
  if (r.right > W + 1 || scrolls) wide.push([e.tagName, (e.closest('section') || {}).id || '', Math.round(r.right)]);
}
return [W, wide, Array.from(document.querySelectorAll('section')).map(s => s.id)];
"""


def _too_wide(report: Path) -> tuple[int, list[list[Any]], list[str]]:
    browser = _browser()
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        browser.set_window_size(1100, 900)
        browser.get(report.as_uri())
        WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.readyState") == "complete")
        width, wide, sections = browser.execute_script(WIDTH_JS)
    finally:
        browser.quit()
    return width, wide, sections


@pytest.mark.parametrize("which", ["run_dir", "trust_dir"])
def test_nothing_is_wider_than_a_1100_px_window_and_the_summary_comes_first(
    which: str, request: pytest.FixtureRequest
) -> None:
    report = request.getfixturevalue(which) / "report.html"
    width, wide, sections = _too_wide(report)
    assert sections[0] == "summary"
    assert not wide, f"elements wider than the {width} px viewport (tag, section, right edge): {wide[:10]}"
