"""The report in a real headless Chromium: it renders offline, with no broken images or scripts.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` of the ``test`` extra.
A missing browser fails the test (CI installs it); it is never skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lrtransfer.study.html import write_report
from test_report import make_study  # tests/ is on sys.path (no package __init__)

INSTALL = ("the report browser test needs Chromium and its driver: "
           "apt-get update && apt-get install -y chromium chromium-driver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1280,900"]


def _executable(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
    if path is None:
        pytest.fail(f"{name} not found; {INSTALL}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail('selenium is missing: pip install -e ".[test]"', pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium")
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    # An explicit driver path keeps Selenium Manager from downloading anything.
    driver = webdriver.Chrome(service=Service(executable_path=_executable("chromedriver")),
                              options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    inputs = make_study(tmp_path_factory.mktemp("browser"))
    return inputs, write_report(**inputs)


def test_report_renders_without_broken_images(browser, report):
    inputs, path = report
    browser.get(path.resolve().as_uri())
    js = browser.execute_script
    images = js("return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])")
    assert len(images) == len(inputs["figures"])
    assert all(ok for _, ok in images), images
    assert browser.title == inputs["title"]
    assert js("return document.querySelectorAll('figure').length") == len(inputs["figures"])
    assert js("return document.querySelectorAll('#runs tbody tr').length") == len(inputs["runs"])
    assert js("return document.querySelectorAll('#runs tr.diverged').length") == 1
    assert js("return document.querySelectorAll('#verdicts tbody tr').length") == len(inputs["verdicts"])


def test_report_runs_no_scripts_and_loads_only_local_files(browser, report):
    _, path = report
    browser.get(path.resolve().as_uri())
    js = browser.execute_script
    assert js("return typeof window.__pwned") == "undefined"  # the escaped <script> never ran
    assert js("return document.scripts.length") == 0
    sources = js("return Array.from(document.querySelectorAll('[src]')).map(e => e.src)")
    assert sources and all(url.startswith("file://") for url in sources), sources
    assert js("return Array.from(document.styleSheets).map(s => s.href)") == [None]  # inline CSS


def test_report_screenshot(browser, report, tmp_path):
    _, path = report
    browser.get(path.resolve().as_uri())
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height + 200, 8000))  # whole page in one shot
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
