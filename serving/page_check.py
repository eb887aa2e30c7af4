"""``python -m serving.page_check --url=http://127.0.0.1:8501/``: plays the drawing
page in headless Chromium, as a person would, and reports what it showed.

It draws a held-out drawing of the target class stroke by stroke with pointer
events (mouse, and the last stroke by touch), reads the guesses after each
stroke, uses Undo and "Show me", and saves a screenshot. The browser is driven
over the Chrome DevTools Protocol (a websocket), so nothing but Chromium and
the ``websockets`` package is needed. Exit status 1 when the page misbehaves.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--window-size=1000,640", "--remote-debugging-port=0"]


class PageError(Exception):
    """The page did not behave as a player expects."""


def find_browser() -> str | None:
    """Chromium's executable: $QUICKDRAW_CHROMIUM, else the system's."""
    explicit = os.environ.get("QUICKDRAW_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


class Browser:
    """A headless Chromium with a fresh profile, and one page driven over CDP."""

    def __init__(self, executable: str, timeout: float = 60):
        from websockets.sync.client import connect
        self._stack = contextlib.ExitStack()
        self._socket = None
        self._profile = tempfile.mkdtemp(prefix="quickdraw-chromium-")
        self._process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, "--user-data-dir=%s" % self._profile, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self._profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise PageError("Chromium did not start (%s)" % executable)
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self._socket = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout))
        self._ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise PageError("%s: %s" % (method, message["error"].get("message")))
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise PageError("script failed: %s" % result["exceptionDetails"].get("text"))
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise PageError("timed out waiting for %s" % what)

    def close(self) -> None:
        self._stack.close()
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)


GUESSES = "Array.from(document.querySelectorAll('#guesses li')).map(li => li.textContent)"


def mouse_stroke(browser: Browser, points: list[tuple[float, float]]) -> None:
    browser.send("Input.dispatchMouseEvent", type="mousePressed", x=points[0][0],
                 y=points[0][1], button="left", buttons=1, clickCount=1)
    for x, y in points[1:]:
        browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y,
                     button="left", buttons=1)
    browser.send("Input.dispatchMouseEvent", type="mouseReleased", x=points[-1][0],
                 y=points[-1][1], button="left", buttons=0, clickCount=1)


def touch_stroke(browser: Browser, points: list[tuple[float, float]]) -> None:
    for kind, (x, y) in zip(["touchStart"] + ["touchMove"] * (len(points) - 1), points):
        browser.send("Input.dispatchTouchEvent", type=kind, touchPoints=[{"x": x, "y": y}])
    browser.send("Input.dispatchTouchEvent", type="touchEnd", touchPoints=[])


def play(url: str, screenshot: str | None = None, target: str | None = None,
         executable: str | None = None) -> dict:
    """Plays the page at ``url``; returns what it showed after each step."""
    executable = executable or find_browser()
    if executable is None:
        raise PageError("no Chromium found (install the chromium package or set "
                        "QUICKDRAW_CHROMIUM)")
    browser = Browser(executable)
    try:
        browser.send("Page.enable")
        browser.send("Emulation.setDeviceMetricsOverride", width=1000, height=620,
                     deviceScaleFactor=1, mobile=False)
        browser.send("Emulation.setTouchEmulationEnabled", enabled=True, maxTouchPoints=5)
        browser.send("Page.navigate", url=url)
        browser.wait_for("window.quickdraw && window.quickdraw.state.target", "the page to load")
        examples = browser.evaluate("Array.from(window.quickdraw.state.examples)")
        target = target or (examples[0] if examples else None)
        if target not in examples:
            raise PageError("the server has no held-out drawing of %r to draw" % target)
        browser.evaluate("document.getElementById('choose').value = %s;"
                         "document.getElementById('choose').dispatchEvent(new Event('change'))"
                         % json.dumps(target))
        with urllib.request.urlopen(urllib.parse.urljoin(
                url, "/examples/" + urllib.parse.quote(target)), timeout=30) as r:
            drawing = json.load(r)["drawing"]
        box = browser.evaluate("(() => { const b = document.getElementById('canvas')"
                               ".getBoundingClientRect(); return [b.left, b.top, b.width]; })()")
        scale = (box[2] - 40) / 255

        report = {"target": target, "strokes": []}
        for i, (xs, ys) in enumerate(drawing):
            points = [(box[0] + 20 + x * scale, box[1] + 20 + y * scale) for x, y in zip(xs, ys)]
            done = browser.evaluate("window.quickdraw.predictions")
            if i == len(drawing) - 1 and i > 0:
                touch_stroke(browser, points)
            else:
                mouse_stroke(browser, points)
            browser.wait_for("window.quickdraw.predictions > %d" % done,
                             "the guesses after stroke %d" % (i + 1))
            report["strokes"].append(browser.evaluate(GUESSES))
        report["verdict"] = browser.evaluate("document.getElementById('verdict').textContent")
        report["drawn_strokes"] = browser.evaluate("window.quickdraw.state.strokes.length")
        if screenshot:
            png = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
            tmp = screenshot + ".tmp"
            with open(tmp, "wb") as f:
                f.write(png)
            os.replace(tmp, screenshot)

        done = browser.evaluate("window.quickdraw.predictions")
        browser.evaluate("document.getElementById('undo').click()")
        if len(drawing) > 1:
            browser.wait_for("window.quickdraw.predictions > %d" % done, "the guesses after undo")
        report["after_undo"] = browser.evaluate("window.quickdraw.state.strokes.length")
        browser.evaluate("document.getElementById('show').click()")
        browser.wait_for("window.quickdraw.shown > 0", "'show me' to finish", timeout=60)
        report["show_me"] = browser.evaluate(GUESSES)
        browser.evaluate("document.getElementById('clear').click()")
        report["after_clear"] = browser.evaluate(GUESSES)
        report["status"] = browser.evaluate("document.getElementById('status').textContent")
        return report
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.page_check",
                                description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8501/")
    p.add_argument("--target", default=None, help="class to draw (default: the first with examples)")
    p.add_argument("--screenshot", default=None, help="PNG of the page after the drawing")
    args = p.parse_args(argv)
    try:
        report = play(args.url, args.screenshot, args.target)
    except PageError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
