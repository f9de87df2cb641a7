"""The MLflow UI in headless Chromium (Selenium with Debian's chromium and chromedriver): read
what a page lists, and take the screenshots in docs/USAGE.md of a sweep.

    python dashboards/mlflow_ui.py --tracking-uri http://127.0.0.1:5000 --experiment NAME \
        --out docs/images

writes `mlflow_runs.png` (the experiment's runs) and `mlflow_curves.png` (the latest sweep's
parent run, whose fid/<condition> metrics are logged against step = fine-tuning pairs).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

PAGE_TIMEOUT_S = 90.0  # the UI is a single-page app: its first load compiles a lot of JS
WINDOW = "1500,950"


class BrowserError(RuntimeError):
    """No Chromium or chromedriver, or a page that never showed what was expected."""


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError(
        f"none of {', '.join(names)} is installed (Debian: apt-get install chromium "
        "chromium-driver; `python3 dev.py setup` does this)"
    )


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium driven by Debian's chromedriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser", "google-chrome")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW}")
    driver = webdriver.Chrome(service=Service(_binary("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver, url: str, expect: str, timeout: float = PAGE_TIMEOUT_S) -> str:
    """Open `url` and wait until its visible text contains `expect`; that text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: expect in d.find_element(By.TAG_NAME, "body").text
        )
    except TimeoutException:
        raise BrowserError(f"{url} did not show {expect!r} within {timeout:.0f} s") from None
    return driver.find_element(By.TAG_NAME, "body").text


def close_side_panels(driver) -> None:
    """Close the UI's assistant panel, when it is open, so screenshots show the runs."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()


def model_training_view(driver) -> None:
    """Switch the UI's workflow toggle to "Model training" (MLflow 3 starts in GenAI, whatever
    the experiment's `mlflow.experimentKind`; the choice is kept for the session)."""
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Model training']"):
        if element.is_displayed():
            element.click()
            time.sleep(2)
            return


def expand_run(driver, run_name: str) -> None:
    """Unfold a parent run's children in the run list (the button left of its name)."""
    from selenium.webdriver.common.by import By

    path = f"//*[text()={run_name!r}]/ancestor::*[4]//button"
    for button in driver.find_elements(By.XPATH, path)[:1]:
        button.click()


def runs_url(tracking_uri: str, experiment_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs"


def screenshots(tracking_uri: str, experiment: str, out: Path) -> list[Path]:
    """The experiment's run list and its latest sweep's curves as PNGs in `out`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise BrowserError(f"no experiment {experiment!r} at {tracking_uri}")
    sweeps = client.search_runs(
        [found.experiment_id], "tags.kind = 'sweep'", order_by=["attributes.start_time DESC"]
    )
    if not sweeps:
        raise BrowserError(f"experiment {experiment!r} has no sweep run yet")
    parent = sweeps[0]
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "mlflow_runs.png", out / "mlflow_curves.png"]
    with chromium() as driver:
        url = runs_url(tracking_uri, found.experiment_id)
        page_text(driver, url, parent.info.run_name)
        model_training_view(driver)
        page_text(driver, url, parent.info.run_name)
        close_side_panels(driver)
        expand_run(driver, parent.info.run_name)
        time.sleep(2)  # let the table settle after its text appears
        driver.save_screenshot(str(paths[0]))
        curves = f"{runs_url(tracking_uri, found.experiment_id)}/{parent.info.run_id}/model-metrics"
        page_text(driver, curves, "fid")
        time.sleep(4)  # the charts draw after the page's text
        driver.save_screenshot(str(paths[1]))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True, help="an MLflow server, http://...")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    try:
        paths = screenshots(args.tracking_uri, args.experiment, args.out)
    except BrowserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
