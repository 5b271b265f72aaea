"""A real browser for checks: headless Chromium driven through the DevTools protocol on a pipe.

No extra Python packages: Chromium's `--remote-debugging-pipe` reads protocol commands on fd 3 and writes
replies on fd 4, one JSON message per NUL-terminated record. Debian's package is `chromium`
(`apt-get install -y chromium`). Used by `tools/check_site.py` (the docs site) and by the test that opens
`report.html`.
"""
import base64, fcntl, json, os, select, shutil, subprocess, tempfile, time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium():
    "Path of a Chromium-family browser on PATH, or None."
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class BrowserError(RuntimeError):
    pass


class Browser:
    "One headless Chromium with one page. `with Browser() as b: b.open(url); b.eval('document.title')`."

    def __init__(self, exe=None, width=1400, height=1000, timeout=60):
        exe = exe or find_chromium()
        if exe is None:
            raise BrowserError("no Chromium found on PATH: install Debian's `chromium` (apt-get install -y chromium)")
        self.timeout, self._id, self._buf, self._events = timeout, 0, b"", []
        self._profile = tempfile.mkdtemp(prefix="headless-")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # move the child's ends above 4, so that putting them on 3 and 4 cannot close one of them
        to_child_r, from_child_w = (self._high(fd) for fd in (to_child_r, from_child_w))
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]
        # bash puts the two pipe ends on fds 3 and 4, where Chromium expects them
        script = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.proc = subprocess.Popen(["bash", "-c", script, exe, *args], pass_fds=(to_child_r, from_child_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r), os.close(from_child_w)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Runtime.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    @staticmethod
    def _high(fd):
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return new

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout} s")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, session=False, **params):
        "Send one protocol command and return its result (events that arrive meanwhile are kept)."
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method):
        "Wait for an event of this page (kept ones first)."
        deadline = time.monotonic() + self.timeout
        while True:
            for i, e in enumerate(self._events):
                if e.get("method") == method:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def open(self, url):
        "Load `url` and wait for its load event (images that are not lazy are in by then)."
        self._events.clear()
        res = self.send("Page.navigate", session=True, url=url)
        if res.get("errorText"):
            raise BrowserError(f"{url}: {res['errorText']}")
        self.wait_event("Page.loadEventFired")

    def eval(self, expression):
        "Evaluate JavaScript in the page (promises awaited) and return its value as JSON data."
        res = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"JavaScript error: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res["result"].get("value")

    def screenshot(self, path, full_page=True, tile=8000):
        """Save a PNG of the page: the window, or the whole page (a page taller than `tile` pixels goes into
        several files, path-1.png, path-2.png, ..., each `tile` high, so that nothing is cut off)."""
        if not full_page:
            return self._shot(path, None)
        w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        if h <= tile:
            return self._shot(path, {"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        stem = str(path)[:-4] if str(path).endswith(".png") else str(path)
        for k, y in enumerate(range(0, h, tile), 1):
            self._shot(f"{stem}-{k}.png", {"x": 0, "y": y, "width": w, "height": min(tile, h - y), "scale": 1})

    def _shot(self, path, clip):
        params = {"format": "png", "captureBeyondViewport": clip is not None, **({"clip": clip} if clip else {})}
        data = self.send("Page.captureScreenshot", session=True, **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            os.write(self._w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Every image of the page, loaded or not: lazy ones are made eager and waited for (5 s each at most).
IMAGES_JS = """(async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 5000); })));
  return imgs.map(i => ({src: (i.getAttribute('src') || '').slice(0, 120), url: i.currentSrc || i.src, alt: i.alt,
                         ok: i.complete && i.naturalWidth > 0, width: i.naturalWidth}));
})()"""
