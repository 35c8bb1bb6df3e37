"""A screenshot of `deepfake-detect app`'s page with images scored (docs/screens/app.png), taken
with Debian's headless chromium through chromium-driver and Selenium (the dev extra). Start the
app first (after `make demo`: `make app`), then:

    .venv/bin/python tools/app_screenshot.py --url http://127.0.0.1:8000 --out docs/screens/app.png \
        data/test/fake/00001.jpg data/test/real/00001.jpg [--faces]

Also the home of :func:`headless_chromium` and :func:`upload`, which the page's browser test
(tests/model/test_app.py) uses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


def browser_binaries() -> tuple[str | None, str | None]:
    """Paths of the chromium browser and of its chromium-driver (None where missing)."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    return browser, shutil.which(DRIVER)


def headless_chromium(width: int = 1280, height: int = 1000):
    """A headless chromium that records its network events (the ``performance`` log). Selenium
    is given both binaries, so its driver manager never looks anything up online; its usage
    statistics are off (``SE_AVOID_STATS``), and so is chromium's background networking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    os.environ.setdefault("SE_OFFLINE", "true")
    browser, driver = browser_binaries()
    if browser is None or driver is None:
        raise FileNotFoundError("chromium and chromium-driver are needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def upload(driver, url: str, images, *, faces: bool | None = None, timeout_s: float = 60.0) -> list:
    """Open the page at ``url``, wait for the model's panel, pick ``images`` (paths) in its file
    input, and return the result cards once every one is answered (verdict and overlay, or its
    error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout_s)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    box = driver.find_element(By.ID, "faces")
    if faces is not None and box.is_enabled() and box.is_selected() != faces:
        box.click()
    driver.find_element(By.ID, "files").send_keys("\n".join(str(Path(p).resolve()) for p in images))

    def answered(d):
        cards = d.find_elements(By.CSS_SELECTOR, "#results .result")
        done = len(cards) == len(images) and all(c.get_attribute("data-state") in ("done", "error") for c in cards)
        return cards if done else False

    return wait.until(answered)


def full_page_screenshot(driver, out: Path) -> Path:
    """The whole page as a PNG (the window grown to the page's height first)."""
    width = driver.execute_script("return document.documentElement.clientWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(max(width, 1280), min(max(height, 600) + 140, 4000))
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running app's address")
    parser.add_argument("--out", type=Path, default=Path("docs/screens/app.png"))
    parser.add_argument("--faces", action=argparse.BooleanOptionalAction, default=None, help="face detection")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args(argv)
    driver = headless_chromium()
    try:
        upload(driver, args.url, args.images, faces=args.faces)
        print(full_page_screenshot(driver, args.out))
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
