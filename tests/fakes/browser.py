"""Headless Chromium for page tests: Debian's `chromium` and `chromedriver`, driven by Selenium.

Nothing is downloaded: the driver binary is named explicitly, so Selenium Manager (which would
look up driver versions online) never runs. Browser and driver come from the same Debian source
package, so their versions always match. `.ci/run` installs both with apt; where they are absent
the tests that need them skip with one line saying how to install them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAMES = ("chromedriver",)
INSTALL_HINT = "apt-get install chromium chromium-driver"

# Offline and as root: no sandbox (Chromium refuses to start as root without it), no GPU, and
# none of the background connections a closed network would refuse over and over.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--no-default-browser-check", "--disable-sync", "--disable-extensions", "--mute-audio",
    "--hide-scrollbars",
)


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_path() -> str | None:
    """The Chromium binary, or None where it is not installed."""
    return _which(CHROMIUM_NAMES)


def missing_reason() -> str | None:
    """Why browser tests cannot run here (one line), or None when they can."""
    if chromium_path() is None:
        return f"no Chromium installed ({INSTALL_HINT})"
    if _which(CHROMEDRIVER_NAMES) is None:
        return f"no chromedriver installed ({INSTALL_HINT})"
    try:
        import selenium  # noqa: F401  (the test extra installs it)
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def start_chromium(profile_dir: Path, width: int = 1280, height: int = 1600):
    """A Selenium WebDriver for headless Chromium with a fresh profile in `profile_dir`."""
    from selenium import webdriver  # deferred: only the browser tests need it
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # belt and braces: Selenium Manager stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path() or CHROMIUM_NAMES[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile_dir}")
    service = Service(executable_path=_which(CHROMEDRIVER_NAMES))
    return webdriver.Chrome(service=service, options=options)
