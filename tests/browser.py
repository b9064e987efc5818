"""Debian's Chromium, headless, through its ChromeDriver: the real browser the web pages' tests look through, on a
phone's screen, and the folder their screenshots are kept in."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support import needs

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
#: A phone's screen (width, height in CSS pixels): parents and teachers open the pages on one.
PHONE = (412, 915)
#: Without these, Chromium reaches for Google's hosts at every start, which this machine's closed network refuses.
QUIET = ("--disable-gpu", "--disable-background-networking", "--disable-extensions")


@contextmanager
def headless_chromium(*arguments: str) -> Iterator[WebDriver]:
    """Chromium on a phone's screen, headless, with `arguments` besides; quit at the end."""
    needs(CHROMIUM.exists() and CHROMEDRIVER.exists(), "Debian's chromium and chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *arguments):
        options.add_argument(argument)
    options.add_argument(f"--window-size={PHONE[0]},{PHONE[1]}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshots_folder(folder: Path) -> Path:
    """`folder` emptied for this run's screenshots (kept after the tests, as artefacts)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
