"""Checks shared by the report tests: referenced files exist, the page loads cleanly in Chromium, and
no value reached it as markup.

Not a test module: test_report.py and test_demo.py import it (pytest puts this folder on sys.path).
"""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Appended to a copy of the page (same folder, so relative sources resolve): once everything has
# loaded, list images that did not decode and audio that could not be opened.
PROBE_SCRIPT = """<script>
window.addEventListener('load', () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
  const audios = [...document.querySelectorAll('audio')].map(a => new Promise(done => {
    if (a.error) return done(a.getAttribute('src'));
    if (a.readyState >= 1) return done(null);
    a.addEventListener('loadedmetadata', () => done(null));
    a.addEventListener('error', () => done(a.getAttribute('src')));
    a.load();
  }));
  Promise.all(audios).then(bad => {
    document.body.setAttribute('data-broken', JSON.stringify(broken.concat(bad.filter(s => s))));
  });
});
</script>"""


def referenced_files(page: Path) -> list[Path]:
    """Every local file an <img src> or <audio src> of the page points to."""
    sources = re.findall(r'<(?:img|audio|source)\b[^>]*\bsrc="([^"]+)"', page.read_text())
    return [page.parent / unquote(html.unescape(src)) for src in sources]


HOSTILE = "<img src=x onerror=alert(1)>"  # a path, label or name that must land on a page as text


def active_markup(text: str) -> list[str]:
    """Script elements and event-handler attributes (on...=) in an HTML text: none belong on our pages."""
    found: list[str] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(f"<{tag} {name}>" for name, _ in attrs if name.startswith("on"))
            if tag == "script":
                found.append("<script>")

    Parser().feed(text)
    return found


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def browser_problems(page: Path, tmp_path: Path) -> list[str]:
    """Console messages and broken media of `page` opened in headless Chromium (skips without one)."""
    browser = find_browser()
    if browser is None:
        pytest.skip(f"no Chromium found on PATH (tried {', '.join(BROWSERS)}); install Debian's `chromium`")
    probe = page.parent / f".probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", PROBE_SCRIPT + "</body>"))
    try:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    problems = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    broken = re.search(r'data-broken="([^"]*)"', result.stdout)
    if broken is None:
        problems.append("the page never finished loading its images and audio")
    elif broken.group(1) != "[]":
        problems.append(f"broken media: {broken.group(1)}")
    return problems
