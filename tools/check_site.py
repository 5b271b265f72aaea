"""Check the rendered docs site in a real browser (headless Chromium): `python tools/check_site.py [_docs]`.

For the index and every lesson page (one per `nbs/*.ipynb`), served over HTTP as GitHub Pages would:
- the page exists, has a title and a heading, and shows the text of every markdown cell of its notebook
  (a phrase of each: nbdev 2 drops whatever shares the title cell with `# title` and `> summary`);
- every image loaded, and there are at least as many as the notebook has figure outputs;
- every function and class its module exports has its API docs (a heading with its name and a signature);
- no traceback, error output, leaked cell directive (`#|`) or raw Quarto/Markdown markup (`:::`, fences);
- no code or output line runs past its box (cut at the right edge), and the page is no wider than the window;
- every link to the site resolves: the page exists and so does the `#anchor` on it.
`--screenshots DIR` also saves a full-page PNG of each page. Exits 1, with every problem listed, if any.
"""
import argparse, functools, http.server, importlib, inspect, json, re, sys, threading, time, urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from headless import IMAGES_JS, Browser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PAGE_JS = r"""(() => {
  const main = document.querySelector('main') || document.body;
  const prose = main.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style').forEach(e => e.remove());
  const overflowing = [...main.querySelectorAll('pre')].filter(p => p.offsetParent !== null
      && p.scrollWidth > p.clientWidth + 1).map(p => p.innerText.split('\n').find(l => l.length > 60) || p.innerText.slice(0, 80));
  const code = [...main.querySelectorAll('pre')].map(p => p.innerText).join('\n');
  return {
    title: document.title, h1: (main.querySelector('h1') || {}).innerText || '', text: document.body.innerText,
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    headings: [...main.querySelectorAll('h2, h3, h4')].map(h => ({id: h.id || (h.closest('section') || {}).id || '',
        text: h.innerText.trim(),
        signature: !!(h.nextElementSibling && h.nextElementSibling.querySelector('pre'))})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    errors: main.querySelectorAll('.cell-output-error').length,
    traceback: /Traceback \(most recent call last\)/.test(main.innerText),
    directives: (code.match(/^\s*#\s?\|\s*[a-z_-]+:?.*$/gm) || []).slice(0, 3),
    markup: (prose.innerText.match(/:::|```|\{\.[a-z-]+\}|\{#[a-z-]+\}/g) || []).slice(0, 3),
    overflowing: overflowing.slice(0, 3),
    pageWidth: document.documentElement.scrollWidth, windowWidth: window.innerWidth,
  };
})()"""


def page_name(nb):
    "nbdev 2's page for a notebook: its file name without the number prefix."
    return re.sub(r"^\d+_", "", nb.stem) + ".html"


def normalized(text):
    "Text as compared here: one space for any whitespace, plain quotes and dashes (Quarto makes them typographic)."
    for a, b in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2014", "-"), ("\u2013", "-"),
                 ("---", "-"), ("--", "-"), ("\u2026", "...")):
        text = text.replace(a, b)
    return " ".join(text.split())


def phrase(markdown):
    "The longest run of plain words (four or more) in a markdown cell, as it must appear on the rendered page."
    runs = []
    for line in markdown.splitlines():
        line = re.sub(r"^\s*(?:[-*>]|\d+\.|#+)\s+", "", line)
        runs += [r.strip() for r in re.split(r"[`*_$\[\]()<>|\\{}#]", line)]
    runs = [r for r in runs if len(r.split()) >= 4]
    return normalized(max(runs, key=len)) if runs else None


def expected(nb):
    """What a lesson's page must show: its figure outputs (count), its module's exported functions and classes,
    and a phrase of each markdown cell."""
    cells = json.loads(nb.read_text())["cells"]
    figures, module, phrases = 0, None, []
    for c in cells:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            figures += len(re.findall(r"!\[[^\]]*\]\((?!https?:)[^)]+\)", src))   # the site's own images
            if phrase(src): phrases.append(phrase(src))
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", src, re.M)
        if m:
            module = m.group(1)
        if c["cell_type"] == "code" and not re.search(r"^#\|\s*(hide|include:\s*false|output:\s*false)", src, re.M):
            figures += sum("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    api = []
    if module:
        mod = importlib.import_module(f"cifar_gradcam.{module}")
        api = [n for n in mod.__all__ if inspect.isfunction(getattr(mod, n)) or inspect.isclass(getattr(mod, n))]
    return figures, api, phrases


def serve(folder):
    "Serve `folder` on a free local port in a background thread; returns the base URL."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}/"


@functools.lru_cache(None)
def ids_of(url):
    "The element ids of a page of the site, or None if it does not load."
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            html = r.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None
    return set(re.findall(r'\bid="([^"]+)"', html))


def check_page(b, base, name, figures, api, shots, phrases=()):
    problems = []
    url = base + name
    if ids_of(url) is None:
        return [f"{name}: the page does not exist"]
    b.open(url)
    imgs = [i for i in b.eval(IMAGES_JS)      # images from other sites (Colab badges) cannot load offline: not checked
            if urlparse(i["url"]).netloc in ("", urlparse(base).netloc) or i["url"].startswith("data:")]
    info = b.eval(PAGE_JS)
    if shots:
        b.screenshot(str(Path(shots) / name.replace(".html", ".png")))   # long pages: -1.png, -2.png, ...
    if not info["title"].strip() or not info["h1"].strip():
        problems.append(f"{name}: no title or no heading")
    text = normalized(info["text"])
    missing = [p for p in phrases if p not in text]
    if missing:
        problems.append(f"{name}: {len(missing)} of its notebook's {len(phrases)} text cells are not on the page, "
                        f"e.g. {missing[0][:80]!r}")
    bad = [i["src"] for i in imgs if not i["ok"]]
    if bad:
        problems.append(f"{name}: {len(bad)} image(s) did not load: {bad[:3]}")
    if len(imgs) < figures:
        problems.append(f"{name}: {len(imgs)} images on the page, but the notebook has {figures} figure outputs")
    documented = {h["text"]: h for h in info["headings"]}
    for n in api:
        h = documented.get(n)
        if h is None:
            problems.append(f"{name}: no API docs for {n}")
        elif not h["signature"]:
            problems.append(f"{name}: the API docs for {n} have no signature")
    if info["errors"] or info["traceback"]:
        problems.append(f"{name}: a traceback or error output is shown")
    if info["directives"]:
        problems.append(f"{name}: cell directives leaked into the page: {info['directives']}")
    if info["markup"]:
        problems.append(f"{name}: raw markup in the text: {info['markup']}")
    if info["overflowing"]:
        problems.append(f"{name}: lines cut at the right edge: {info['overflowing']}")
    if info["pageWidth"] > info["windowWidth"]:
        problems.append(f"{name}: the page is wider ({info['pageWidth']} px) than the window ({info['windowWidth']} px)")
    here = set(info["ids"])
    for link in sorted(set(info["links"])):
        target, frag = urldefrag(link)
        if urlparse(link).netloc != urlparse(base).netloc:
            continue
        if target.endswith("/"):
            target += "index.html"
        ids = here if target == url else ids_of(target)
        if ids is None:
            problems.append(f"{name}: broken link {link}")
        elif frag and frag not in ids:
            problems.append(f"{name}: link to a missing anchor {link}")
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", nargs="?", default=str(ROOT / "_docs"))
    ap.add_argument("--screenshots", metavar="DIR", help="save a full-page PNG of each page here")
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args(argv)
    site = Path(args.site)
    if not (site / "index.html").exists():
        sys.exit(f"{site}/index.html does not exist: build the site first (nbdev_docs)")
    if args.screenshots:
        Path(args.screenshots).mkdir(parents=True, exist_ok=True)
    notebooks = [ROOT / "nbs" / "index.ipynb"] + sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    pages = [(page_name(nb), *expected(nb)) for nb in notebooks]
    base, problems, t0 = serve(site), [], time.monotonic()
    with Browser(width=args.width) as b:
        b.send("Network.enable", session=True)
        b.send("Network.setBlockedURLs", session=True, urls=["https://*"])  # offline: the CDNs (MathJax) cannot load
        for name, figures, api, phrases in pages:
            found = check_page(b, base, name, figures, api, args.screenshots, phrases)
            print(f"{'ok ' if not found else 'BAD'} {name}: {figures} figures, {len(api)} API entries, {len(phrases)} text cells"
                  + "".join(f"\n    {p}" for p in found))
            problems += found
    print(f"{len(pages)} pages checked in {time.monotonic() - t0:.0f} s: "
          + (f"{len(problems)} problem(s)" if problems else "no problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
