"""In a real browser (headless Chromium): the run's report.html, and the docs-site checker CI runs on `_docs`."""
import re
import shutil

from check_site import check_page, serve
from headless import IMAGES_JS


def test_report_html_opens_alone_in_a_browser_with_every_figure(smoke_run, browser, tmp_path):
    "Copied away from its folder, report.html still shows every figure of report.md, in the course's order."
    alone = tmp_path / "report.html"
    shutil.copy(smoke_run / "report.html", alone)         # nothing beside it: the figures must be inside
    browser.open(alone.as_uri())
    imgs = browser.eval(IMAGES_JS)
    md = (smoke_run / "report.md").read_text()
    assert len(imgs) == len(re.findall(r"!\[[^]]*\]\([^)]+\.png\)", md)) >= 8
    assert all(i["ok"] and i["width"] > 100 for i in imgs), [i for i in imgs if not i["ok"]]
    sections = browser.eval("[...document.querySelectorAll('h2')].map(h => h.innerText.trim())")
    assert sections == re.findall(r"^## (.+)$", md, re.M)
    text = browser.eval("document.body.innerText")
    assert re.search(r"Validation accuracy \d+\.\d+%", text) and "Traceback" not in text
    table = re.search(r"```\n(class .*?)```", md, re.S).group(1)          # the per-class table, shown as is
    assert table.strip() in browser.eval("[...document.querySelectorAll('pre')].map(p => p.innerText).join('\\n')")


PAGE = """<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>
<section id="fit"><h3 id="fit">fit</h3><div><pre>def fit(model, train, test)</pre></div><p>Train.</p></section>
<img src="{img}"><a href="{link}">a link</a><p>{text}</p></main></body></html>"""

def test_the_site_checker_passes_a_good_page_and_fails_a_broken_one(browser, tmp_path):
    from PIL import Image
    Image.new("RGB", (8, 8), "red").save(tmp_path / "fig.png")
    (tmp_path / "good.html").write_text(PAGE.format(title="Good", img="fig.png", link="broken.html#fit", text="fine"))
    (tmp_path / "broken.html").write_text(PAGE.format(
        title="Broken", img="missing.png", link="nowhere.html",
        text="Traceback (most recent call last): ::: {.callout-note}"))
    base = serve(tmp_path)
    assert check_page(browser, base, "good.html", figures=1, api=["fit"], shots=None, phrases=["a link"]) == []
    problems = "\n".join(check_page(browser, base, "broken.html", figures=2, api=["fit", "evaluate"], shots=None,
                                    phrases=["a link", "the objectives of the lesson"]))   # one text cell lost
    for expected in ("image(s) did not load", "but the notebook has 2 figure outputs", "no API docs for evaluate",
                     "traceback", "raw markup", "broken link", "1 of its notebook's 2 text cells are not on the page"):
        assert expected in problems, (expected, problems)
    assert "no API docs for fit" not in problems
    assert check_page(browser, base, "absent.html", 0, [], None) == ["absent.html: the page does not exist"]
