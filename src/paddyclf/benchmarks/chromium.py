"""Headless Chromium driven by selenium (Debian's ``chromium`` and ``chromium-driver``), at a phone's size.

Shared by ``paddyclf benchmark browser`` and the browser tests. Only the benchmarks layer and the
tests use a browser; selenium is imported when one is started.
"""

from __future__ import annotations

import shutil

from ..errors import UserError

PHONE = (390, 844)  # CSS pixels of a common phone, portrait
MISSING = (
    "A headless Chromium is needed: apt-get install chromium chromium-driver (Debian), and pip install selenium "
    "(in paddyclf's dev extra)."
)


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) executables, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(width: int = PHONE[0], height: int = PHONE[1], mobile: bool = True):
    """A selenium driver of a fresh headless Chromium profile, the viewport emulated at width x height."""
    paths = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError(MISSING) from None
    if paths is None:
        raise UserError(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(paths[1]))
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver
