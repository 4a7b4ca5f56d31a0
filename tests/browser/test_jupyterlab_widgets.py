"""The chapters' widgets, live: JupyterLab on 127.0.0.1 runs a chapter (in test mode) in a real browser,
the test drags a slider with the mouse, and the figure and the numbers the widget prints must change.

The server serves a temporary copy of book/ (the tracked notebooks are never opened), with autosave off
and no requests to the web (news and update checks off)."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import BOOK

pytestmark = pytest.mark.browser

SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    # every cell in the DOM, so the test can see every prompt and output
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
RUN_TIMEOUT_MS = 300_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory, chromium):
    """``(base_url, token, notebook_dir)`` of a JupyterLab serving a temporary copy of the chapters."""
    home = tmp_path_factory.mktemp("jupyterlab")
    notebooks = home / "book"
    shutil.copytree(BOOK, notebooks, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    for name, values in SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "CAPSEDU_TEST_MODE": "1", "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
           "IPYTHONDIR": str(home / "ipython")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={notebooks}", f"--LabApp.user_settings_dir={home / 'settings'}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(home / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (home / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, notebooks
    finally:
        try:
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST"),
                                   timeout=10)
        except OSError:
            pass
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def _open_and_run_all(offline_page, jupyterlab, name):
    """Open a chapter, wait for its kernel, run all cells through the Run menu, wait for the last cell."""
    base, token, notebooks = jupyterlab
    before = (notebooks / name).read_bytes()
    workspace = name.split(".")[0]          # a fresh workspace per chapter: only this notebook is open
    page, log = offline_page(f"{base}/lab/workspaces/{workspace}/tree/{name}?reset&token={token}",
                             width=1400, height=1000, wait_until="domcontentloaded")
    # The execution indicator says "Idle" before the kernel exists: wait until the status bar names the
    # kernel *and* says Idle.
    page.wait_for_function("""() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
        .some(e => /Python 3.*\\|\\s*Idle/.test(e.textContent))""", timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    prompts = "() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))" \
              ".map(p => p.textContent.trim())"
    try:
        page.wait_for_function(f"() => {{ const p = ({prompts})(); return p.length > 0 && "
                               "p.every(t => /^\\[\\d+\\]:$/.test(t)); }", timeout=RUN_TIMEOUT_MS, polling=1000)
    except Exception as exc:  # say where it stopped, not only that it timed out
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        raise AssertionError(f"{name} did not finish: prompts {page.evaluate(prompts)}; stderr: "
                             f"{[e[:500] for e in errors.all_inner_texts()]}") from exc
    tracebacks = page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
    assert tracebacks.count() == 0, tracebacks.first.inner_text()[:2000]
    return page, log, before


def _drag_slider(page, slider, fraction: float):
    """Drag the slider's handle with the mouse to ``fraction`` of its track."""
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-base").first.bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()


def _slider(widget, label):
    return widget.locator(".widget-slider", has=widget.page.locator(".widget-label", has_text=re.compile(f"^{label}$")))


def _image_src(locator):
    return locator.locator(".widget-output img").first.get_attribute("src")


def test_routing_widget_slider_changes_figure_and_printed_couplings(offline_page, jupyterlab):
    page, log, before = _open_and_run_all(offline_page, jupyterlab, "03_routing.ipynb")
    readout = page.locator("pre.capsedu-couplings")
    assert readout.count() == 1
    widget = page.locator(".widget-vbox", has=readout).last
    slider = _slider(widget, "iterations r")
    assert slider.locator(".widget-readout").inner_text().strip() == "3"          # the cell leaves r = 3
    text_before, figure_before = readout.inner_text(), _image_src(widget)
    assert "r = 3" in text_before and figure_before.startswith("data:image/png")

    _drag_slider(page, slider, 0.85)
    r = int(slider.locator(".widget-readout").inner_text())
    assert r > 3
    # the slider updates continuously: wait for the kernel's answer to its final position
    page.wait_for_function("(r) => document.querySelector('pre.capsedu-couplings').textContent.includes(`r = ${r}:`)",
                           arg=r, timeout=30_000)
    text_after = readout.inner_text()
    page.wait_for_function("([sel, src]) => document.querySelector(sel).getAttribute('src') !== src",
                           arg=[".widget-vbox .widget-output img", figure_before], timeout=30_000)
    assert _image_src(widget) != figure_before
    # more iterations sharpen the couplings: child 0's coupling to parent 0 grows
    c00 = lambda text: float(text.splitlines()[2].split("|")[1].split()[0])
    assert c00(text_after) > c00(text_before)
    assert not log.problems(), log.problems()
    assert (jupyterlab[2] / "03_routing.ipynb").read_bytes() == before        # autosave is off


def test_decoder_perturbation_sliders_change_the_reconstruction(offline_page, jupyterlab):
    page, log, before = _open_and_run_all(offline_page, jupyterlab, "06_decoder.ipynb")
    readout = page.locator("pre.capsedu-pose")
    assert readout.count() == 1
    widget = page.locator(".widget-vbox", has=readout).last
    assert "offsets: none" in readout.inner_text()
    # the widget fits the notebook (1400 px window, file browser open): every slider's readout lies inside
    # the output area, none cut off at its right edge
    area = page.locator(".jp-OutputArea-output", has=readout).last.bounding_box()
    readouts = widget.locator(".widget-slider .widget-readout").all()
    assert len(readouts) >= 16
    for r in readouts:
        box = r.bounding_box()
        assert box is not None and box["x"] + box["width"] <= area["x"] + area["width"] + 1, (box, area)

    values = {}
    for label, fraction in (("dim 0", 0.95), ("dim 5", 0.05)):
        figure = _image_src(widget)
        _drag_slider(page, _slider(widget, label), fraction)
        value = float(_slider(widget, label).locator(".widget-readout").inner_text().replace("\u2212", "-"))
        page.wait_for_function("(s) => document.querySelector('pre.capsedu-pose').textContent.includes(s)",
                               arg=f"{label} {value:+.2f}", timeout=30_000)
        page.wait_for_function("([sel, src]) => document.querySelector(sel).getAttribute('src') !== src",
                               arg=[".widget-vbox .widget-output img", figure], timeout=30_000)
        assert (value > 0.1) if fraction > 0.5 else (value < -0.1)
        values[label] = value
    # both offsets at once: the decoder drew the capsule with the two dimensions moved
    assert readout.inner_text().startswith("digit 3, offsets: " + ", ".join(f"{k} {v:+.2f}" for k, v in values.items()))
    assert not log.problems(), log.problems()
    assert (jupyterlab[2] / "06_decoder.ipynb").read_bytes() == before
