"""Headless Chromium driven by selenium, for tests that use a page as a user does.

The browser is Debian's `chromium` with its `chromium-driver` (`apt-get install chromium
chromium-driver`; .ci/run installs them). Without them the test skips and says so, unless
ADAPTFLOW_REQUIRE_BROWSER is set (CI sets it), where it fails: a browser test that silently
skips in CI proves nothing.
"""

from __future__ import annotations

import os
import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium_driver():
    """A headless Chromium session (quit it when done)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        reason = (
            "no headless browser: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver), as .ci/run does"
        )
        if os.environ.get("ADAPTFLOW_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    # the driver named here: selenium's manager would look for one on the network
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
