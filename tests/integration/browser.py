"""Headless Chromium driven over the DevTools protocol (a websocket; no driver download): open a
page, wait for it to load, evaluate JavaScript in it. Used by the UI page tests to log in
through Airflow's real login form and read what a user sees."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium with one tab; `with Browser() as b: b.goto(url); b.evaluate(js)`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="venue-risk-chromium-")
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.ids = itertools.count(1)
        self.ws = None

    def __enter__(self) -> "Browser":
        from websockets.sync.client import connect

        deadline = time.monotonic() + 30
        while True:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2))
                page = next(t for t in targets if t.get("type") == "page")
                break
            except (OSError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise TimeoutError("Chromium's DevTools endpoint did not come up within 30 s")
                time.sleep(0.3)
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.call("Page.enable")
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result (events received meanwhile are dropped)."""
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def wait_for(self, condition: str, seconds: float = 30) -> None:
        """Until the JavaScript `condition` is true in the page."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.evaluate(f"Boolean({condition})"):
                    return
            except RuntimeError:
                pass  # the page is navigating
            time.sleep(0.25)
        raise TimeoutError(f"not true within {seconds} s: {condition} (at {self.url()})")

    def url(self) -> str:
        return self.evaluate("location.href")

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type `text` as keyboard input."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def login(self, base: str, next_url: str, username: str, password: str) -> None:
        """Open `next_url`, which sends an anonymous browser to Airflow's login form; sign in there
        and wait to be back on `next_url`."""
        self.goto(next_url)
        self.wait_for("document.querySelector('input[name=password]')")
        self.type_into("input[name=username]", username)
        self.type_into("input[name=password]", password)
        self.wait_for("!document.querySelector('button[type=submit]').disabled", 10)
        self.evaluate("document.querySelector('button[type=submit]').click()")
        self.wait_for(f"location.href === {json.dumps(next_url)} && document.readyState === 'complete'")
