"""The MLflow UI in a real browser: a tiny `raysitter train` writes a store, `raysitter ui`
serves it on 127.0.0.1, and headless Chromium (Debian's `chromium` + `chromium-driver`, driven
by Selenium; no browser download) opens the experiment page, the run page, its metrics and its
artifacts. `RAYSITTER_SCREENSHOTS=DIR` keeps the screenshots (the README's come from here)."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import urllib.request

from mlflow.tracking import MlflowClient
import pytest

from tests.conftest import free_port, wait_for_health

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("RAYSITTER_REQUIRE_BROWSER"):
    pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)", allow_module_level=True)


def start_ui(output_dir: Path) -> tuple[subprocess.Popen, str]:
    """`raysitter ui` on a free port, not yet waited for (it starts while the run trains)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "raysitter"), "ui", "--port", str(port), "--output-dir", str(output_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    return proc, f"http://127.0.0.1:{port}"


class Browser:
    """Headless Chromium with the flags this closed network needs."""

    def __init__(self, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1500,1100"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.shots = shots

    def open(self, url: str, *texts: str, timeout: float = 60) -> str:
        """Loads `url` and waits until the page shows every one of `texts`; returns the page text."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(url)
        try:
            WebDriverWait(self.driver, timeout).until(lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts))
        except TimeoutException:
            body = self.driver.find_element(By.TAG_NAME, "body").text
            missing = [t for t in texts if t not in body]
            self.shot("failed")
            raise AssertionError(f"{url} never showed {missing}; it shows:\n{body[:3000]}") from None
        return self.driver.find_element(By.TAG_NAME, "body").text

    def quiet(self) -> None:
        """Closes MLflow's assistant side panel (it hides half of every page) for later pages."""
        self.driver.execute_script("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false')")
        self.driver.refresh()

    def search(self, placeholder: str, text: str, *expected: str, timeout: float = 60) -> str:
        """Types `text` into the input with `placeholder` and waits for `expected`."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        box = WebDriverWait(self.driver, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, f"input[placeholder='{placeholder}']"))
        box.send_keys(Keys.CONTROL, "a")  # clear() does not reach React's state: replace the selection instead
        box.send_keys(Keys.BACKSPACE, text)
        WebDriverWait(self.driver, timeout).until(lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in expected))
        return self.driver.find_element(By.TAG_NAME, "body").text

    def click(self, text: str, then_shows: str, timeout: float = 30) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, timeout).until(lambda d: d.find_element(By.XPATH, f"//*[text()='{text}']")).click()
        WebDriverWait(self.driver, timeout).until(lambda d: then_shows in d.find_element(By.TAG_NAME, "body").text)

    def wait_for_image(self, min_width: int = 300, timeout: float = 30) -> None:
        """The artifact preview has drawn a fetched image (a blob: <img>, at least `min_width` wide)."""
        from selenium.webdriver.support.ui import WebDriverWait

        script = f"return [...document.images].some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth >= {min_width})"
        WebDriverWait(self.driver, timeout).until(lambda d: d.execute_script(script))

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        self.driver.quit()


def test_run_pages_show_the_run_its_metrics_and_artifacts(ray_session, output_dir, tmp_path):
    from pipelines import train

    client = MlflowClient(f"sqlite:///{output_dir / 'mlflow.db'}")
    client.search_experiments()  # the store exists (and is migrated) before the UI and the run open it
    proc, url = start_ui(output_dir)  # starts while the run trains, as a user's open UI watches a run
    browser = None
    try:
        train.main(["trainer.epochs=3", "augment=translate", "optimizer.lr=0.002", "tracking.run_name=browser-test-run"], prog="raysitter train")
        experiment = client.get_experiment_by_name("raysitter")
        run = client.search_runs([experiment.experiment_id])[0]
        assert run.data.tags["mlflow.note.content"].count("raysitter train") == 1  # the description holds the command
        wait_for_health(url, proc, lambda: proc.stdout.read(), "raysitter ui")

        shots = Path(os.environ.get("RAYSITTER_SCREENSHOTS", tmp_path / "shots"))
        shots.mkdir(parents=True, exist_ok=True)
        browser = Browser(shots)
        base = f"{url}/#/experiments/{experiment.experiment_id}"
        browser.open(f"{base}/runs", "browser-test-run")  # the experiment's run list
        browser.quiet()
        browser.shot("experiment")
        (dataset,) = run.inputs.dataset_inputs  # MLflow's own Datasets and Source/commit fields, filled and shown
        commit = run.data.tags["mlflow.source.git.commit"]
        assert dataset.dataset.name == "digits" and len(commit) == 40 and run.data.tags["mlflow.source.name"] == "raysitter train"
        page = browser.open(f"{base}/runs/{run.info.run_id}", "browser-test-run", "Finished", "Result after 3 epochs", "Reproduce", "raysitter train",
                            "val/acc", "test/acc", "train/loss", "git.commit", "optimizer.lr", dataset.dataset.digest, commit[:7])
        assert "0.002" in page  # the param's value, from the resolved config
        browser.shot("run")
        browser.open(f"{base}/runs/{run.info.run_id}/model-metrics", "diag/act")
        for metric in ("val/acc", "train/loss"):  # each chart, drawn from the logged history
            browser.search("Search metric charts", metric, f"browser-test-run ({metric})")
            browser.shot(f"metrics_{metric.replace('/', '_')}")
        browser.open(f"{base}/runs/{run.info.run_id}/artifacts", "plots", "samples", "bundle", "config.yaml", "confusion_matrix.csv")
        browser.click("plots", then_shows="confusion_matrix.png")
        browser.click("confusion_matrix.png", then_shows="plots/confusion_matrix.png")
        browser.wait_for_image()  # the preview pane draws the PNG
        browser.shot("artifacts")
    finally:
        if browser is not None:
            browser.close()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0 and "stopped" in out, out[-2000:]
    with pytest.raises(OSError):  # the server (and its workers) are gone
        urllib.request.urlopen(f"{url}/health", timeout=2)
