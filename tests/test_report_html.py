"""report.html: report.md as one self-contained page. Parsed with the standard library's
html.parser: every image is a data URI holding the figure's PNG, every link resolves to a file
of the report folder, the pipe tables are tables, raw HTML from result files stays text; and,
where Debian's chromium is installed, a headless browser's screenshot shows the page."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

from segact.report import cli as report
from segact.report.html import REPORT_HTML, render_html
from tests.report_fixtures import write_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"
RED = (255, 0, 0)
TEXT = """# Report of sweep <one>

| loss | best Dice |
|:-----|----------:|
| dice | **0.712** ± 0.026 |
| bce  | 0.650 ± 0.030 |

![figure.png](figure.png)

See [the results](results.csv) and [the runs](https://example.org/runs).

- error: <script>alert(1)</script> [click](javascript:alert(1))
"""


class Page(HTMLParser):
    """What a page shows: its images' sources, its links' targets, its tags, its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str | None] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "img":
            self.images.append(found.get("src") or "")
        if tag == "a":
            self.links.append(found.get("href"))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def embedded_png(source: str) -> bytes:
    """The PNG bytes of a data URI; fails for anything else (a path, an address)."""
    head, _, payload = source.partition(",")
    assert head == "data:image/png;base64", source[:60]
    data = base64.b64decode(payload, validate=True)
    assert data.startswith(PNG_SIGNATURE)
    return data


def check_page(page: Page, folder: Path) -> None:
    """Every image embedded as a PNG, every relative link a file in ``folder``."""
    assert page.images
    for source in page.images:
        Image.open(io.BytesIO(embedded_png(source))).verify()
    for link in page.links:
        parts = urlsplit(link or "")
        if link and not parts.scheme:
            target = (folder / unquote(parts.path)).resolve()
            assert target.is_file() and target.is_relative_to(folder.resolve()), link


def report_folder(folder: Path) -> Path:
    """A report folder by hand: a red figure and the CSV the text links to."""
    folder.mkdir()
    Image.new("RGB", (160, 120), RED).save(folder / "figure.png")
    (folder / "results.csv").write_text("loss,best_dice\ndice,0.712\n")
    return folder


def test_figures_are_embedded_and_links_resolve(tmp_path):
    folder = report_folder(tmp_path / "out")
    page = Page(render_html(TEXT, folder))
    check_page(page, folder)
    assert embedded_png(page.images[0]) == (folder / "figure.png").read_bytes()
    assert page.links == ["results.csv", "https://example.org/runs", None]  # no javascript:
    assert page.tags.count("table") == 1 and page.tags.count("td") == 4
    assert "script" not in page.tags and "<script>alert(1)</script>" in "".join(page.text)
    assert "Report of sweep <one>" in page.text  # the title, as text


@pytest.mark.slow
def test_the_report_writes_report_html_beside_report_md(tmp_path):
    sweep = write_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    page = Page((out / REPORT_HTML).read_text())
    check_page(page, out)
    figures = (out / "report.md").read_text().count("![")
    assert len(page.images) == figures == len(list(out.glob("*.png")))
    assert {embedded_png(source) for source in page.images} == {
        path.read_bytes() for path in out.glob("*.png")
    }
    assert page.tags.count("table") >= 1 and "## " not in "".join(page.text)


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"no headless browser: {CHROMIUM} is absent (Debian: apt-get install chromium)",
)
def test_a_headless_browser_shows_the_page_with_its_figure(tmp_path):
    """The page alone (moved away from its figure's file): the screenshot is not blank and shows
    the embedded red figure."""
    page = tmp_path / "page" / REPORT_HTML
    page.parent.mkdir()
    page.write_text(render_html(TEXT, report_folder(tmp_path / "out")))
    shutil.rmtree(tmp_path / "out")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24) or []
    assert len(colours) > 1  # not all one colour
    reds = sum(n for n, colour in colours if colour == RED)
    assert reds >= 160 * 120 // 2  # the figure, drawn from the data URI
