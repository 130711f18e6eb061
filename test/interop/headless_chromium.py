"""Headless Chromium (Debian `chromium`) opened on a page, for tests that check what a browser
user sees. Driven over the DevTools protocol with websocket-client: no npm package and no
browser download, so it works with the Debian package alone (scripts/setup.sh installs it).

    with Browser("http://127.0.0.1:3000/", width=390, height=844) as page:
        page.evaluate("document.title")
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websocket

START_TIMEOUT = 30.0      # s for Chromium to open its DevTools port (a loaded CI machine is slow)
CALL_TIMEOUT = 10.0       # s for one DevTools call


def chromium_path():
    """The Chromium executable, or None when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page on `url`, in a private profile deleted at close."""

    def __init__(self, url, width=1280, height=800):
        self.url, self.width, self.height = url, width, height
        self._profile = None
        self._proc = None
        self._ws = None
        self._log = None
        self._ids = itertools.count(1)

    def __enter__(self):
        executable = chromium_path()
        if executable is None:
            raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
        # Chromium's helper processes can still be writing into the profile while it is removed
        self._profile = tempfile.TemporaryDirectory(prefix="pigeonhub-chromium-",
                                                    ignore_cleanup_errors=True)
        profile = Path(self._profile.name) / "profile"
        # its chatter goes to a file: a pipe nobody reads would fill up and stall it
        self._log = open(Path(self._profile.name) / "chromium.log", "wb")
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        self._proc = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", self.url],
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        try:
            self._ws = websocket.create_connection(self._page_socket(profile), timeout=CALL_TIMEOUT,
                                                   suppress_origin=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _page_socket(self, profile):
        """The DevTools WebSocket of the page Chromium opened: its port is written to
        DevToolsActivePort in the profile once it listens."""
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self.log()[-2000:]
                raise RuntimeError(f"chromium exited with {self._proc.returncode}: {err}")
            lines = port_file.read_text().split() if port_file.exists() else []
            if lines:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{lines[0]}/json/list",
                                                timeout=CALL_TIMEOUT) as r:
                        targets = json.load(r)
                except OSError:
                    targets = []
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise TimeoutError(f"chromium did not open its DevTools port within {START_TIMEOUT:g} s")

    def call(self, method, **params):
        """One DevTools command; its result (events that arrive meanwhile are skipped)."""
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout, interval=0.05):
        """Evaluate until the value is truthy; returns (value, seconds waited) or raises
        AssertionError with the last value."""
        start = time.monotonic()
        while True:
            value = self.evaluate(expression)
            waited = time.monotonic() - start
            if value or waited > timeout:
                if not value:
                    raise AssertionError(f"after {waited:.1f} s, still {value!r}: {expression}")
                return value, waited
            time.sleep(interval)

    def log(self):
        """What Chromium printed so far (for a failure report)."""
        if self._profile is None:
            return ""
        return (Path(self._profile.name) / "chromium.log").read_text(errors="replace")

    def _signal_group(self, sig):
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def close(self):
        if self._ws is not None:
            self._ws.close()
            self._ws = None
        if self._proc is not None:
            # the whole process group: the renderer and utility processes too, not only the browser
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(5)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None
