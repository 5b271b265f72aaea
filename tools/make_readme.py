"""Write README.md from nbs/index.ipynb, the way `nbdev_readme` would, without Quarto.

`nbdev_readme` renders through Quarto, which cannot be installed on every machine this project
is developed on. This script needs only the standard library, so the README can be regenerated
(and checked) anywhere:

    python tools/make_readme.py          # rewrite README.md
    python tools/make_readme.py --check  # exit 1 if README.md is not what index.ipynb gives

Rules (Quarto's, for the directives this project uses): markdown cells are copied; code cells are
shown as ```python blocks without their `#|` directive lines; `#| hide` and `#| include: false`
drop a cell; `#| echo: false` keeps only its output; text outputs become plain blocks and
markdown outputs are copied. Image outputs are left out (the README links to the docs site);
relative links in markdown cells (e.g. `images/x.png`) are rewritten to point into `nbs/`.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.+?)\s*$")
BANNER = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->"


def _text(x) -> str:
    return "".join(x) if isinstance(x, list) else (x or "")


def _directives(src: str) -> tuple[dict[str, str], str]:
    lines, opts = src.splitlines(), {}
    i = 0
    while i < len(lines) and (not lines[i].strip() or DIRECTIVE.match(lines[i])):
        m = DIRECTIVE.match(lines[i])
        if m:
            key, _, val = m.group(1).partition(":")
            opts[key.strip()] = val.strip()
        i += 1
    return opts, "\n".join(lines[i:]).strip("\n")


def _outputs(cell: dict) -> list[str]:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append("```\n" + _text(out["text"]).rstrip("\n") + "\n```")
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/markdown" in data:
                parts.append(_text(data["text/markdown"]).strip("\n"))
            elif "text/plain" in data and not any(k.startswith("image/") for k in data):
                parts.append("```\n" + _text(data["text/plain"]).rstrip("\n") + "\n```")
    return parts


def render(nb_path: Path) -> str:
    """The README text for the notebook at `nb_path`."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    blocks = [BANNER]
    for cell in nb["cells"]:
        src = _text(cell.get("source"))
        if cell["cell_type"] == "markdown":
            # links relative to nbs/ (images for the docs site) must point into nbs/ from the repo root
            blocks.append(re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", r"](nbs/\1)", src.strip("\n")))
            continue
        if cell["cell_type"] != "code":
            continue
        opts, code = _directives(src)
        if "hide" in opts or opts.get("include") == "false":
            continue
        if opts.get("echo") != "false" and code:
            blocks.append("```python\n" + code + "\n```")
        blocks.extend(_outputs(cell))
    return "\n\n".join(b for b in blocks if b) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    p.add_argument("--nb", type=Path, default=ROOT / "nbs" / "index.ipynb")
    p.add_argument("--out", type=Path, default=ROOT / "README.md")
    a = p.parse_args(argv)
    new = render(a.nb)
    if a.check:
        old = a.out.read_text(encoding="utf-8") if a.out.exists() else ""
        if old != new:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       str(a.out), "from " + str(a.nb)))
            print(f"\n{a.out.name} is out of date: run `python tools/make_readme.py`", file=sys.stderr)
            return 1
        return 0
    a.out.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
