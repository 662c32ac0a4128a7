"""The briefing's renderers (reports.render) on the golden fixture: Markdown and HTML, both languages.
The HTML is also opened in Chromium by tests/integration/test_briefing.py."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import pytest

from reports import daily
from reports.briefing import briefing
from reports.render import mmss, pct, render, render_html, render_md, svg_bars
from tests.golden.daily import DATE, messages


@pytest.fixture(scope="module")
def report():
    records, unreadable = daily.decode(daily.fold_latest(messages()))
    return briefing(records, DATE, unreadable)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each element id'd by `id`."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str | None] = []
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("meta", "br", "line", "rect", "link", "img"):
            self.stack.append(a.get("id"))

    def handle_endtag(self, tag):
        if self.stack and tag not in ("meta", "br", "line", "rect", "link", "img"):
            self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            if i:
                self.text[i] = self.text.get(i, "") + data

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def parse(text: str) -> Tags:
    p = Tags()
    p.feed(text)
    return p


def test_time_and_share_formats():
    assert [mmss(v) for v in (None, 0, 59, 60, 140, 400, 3725)] == ["—", "0:00", "0:59", "1:00", "2:20", "6:40",
                                                                  "62:05"]
    assert [pct(v) for v in (None, 0.0, 0.5714, 1.0)] == ["—", "0.0%", "57.1%", "100.0%"]


def test_markdown_in_english(report):
    md = render_md(report, "en")
    assert md.startswith("# Daily briefing — 2023-06-12 (Asia/Shanghai)\n")
    assert "**Status**: final: all 7 zone records are closed (past the next midnight and the grace) · data as of " \
           "2023-06-13T00:10:05+08:00" in md
    assert "| 29 | 7 | 45 | 24 | 7 (25.0%) | 16 (57.1%) | 22 (78.6%) | 6 | 28 | — | — |" in md
    assert "Zone medians 1:00–6:40 (median of zones 2:30); zone p90 2:20–6:40 (median of zones 4:10)" in md
    assert "| 1 | 场馆核心区 / Venue core [core] | 2 | 2 | 100.0% |" in md
    assert "| 5 | 场馆内圈 / Venue inner [inner] | 1:30 | 2:20 | 3 |" in md
    assert "| 20:00–21:00 | 14 | 21 |" in md
    assert "| Chinese (zh) | 24 | 82.8% |" in md and "| not given (und) | 1 | 3.4% |" in md
    assert "| 网格 A / Grid A [A] | grid | yes | 10 | 3 | 4 | 8 | 2 | 5 | 7 | 2 | 2:30 | 5:20 |" in md
    assert "Grid D" not in md and "Not listed: 1 zone(s)" in md       # the quiet zone
    assert "a call in k zones counts k times" in md
    assert "Skipped, unreadable: 1 record(s): 2023-06-12|X (not JSON)" in md


def test_markdown_in_chinese(report):
    md = render_md(report, "zh")
    assert md.startswith("# 每日研判 — 2023-06-12 (Asia/Shanghai)\n")
    assert "**状态**：已定稿：7 个区域的记录均已过次日零时及宽限期" in md
    for heading in ("## 总体", "## 超时最多的区域", "## 中位响应最慢的区域", "## 高峰时段", "## 警情语种", "## 各区域",
                    "## 说明"):
        assert heading in md
    assert "| 中文 (zh) | 24 | 82.8% |" in md and "| 场馆 | 3 | 10 | 31 | 8 | 7 | 3 |" in md
    assert "Daily briefing" not in md and "Breaches" not in md


def test_a_day_in_progress_says_so(report):
    rep = copy.deepcopy(report)
    rep["status"], rep["zones_final"] = "in_progress", 5
    assert "in progress: 5 of 7 zone records final, figures may still change" in render_md(rep, "en")
    assert "进行中：7 个区域记录中 5 个已定稿" in render_md(rep, "zh")
    assert 'data-status="in_progress"' in render_html(rep, "en")


def test_html_is_one_file_with_the_chart_and_the_tables(report):
    page = render_html(report, "en")
    p = parse(page)
    # no external asset: no script, stylesheet link, image or remote URL
    assert not p.find("script") and not p.find("link") and not p.find("img")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    bars = [a for a in p.find("rect") if "bar" in a["class"].split() and "alerts" not in a["class"].split()]
    assert [int(a["data-value"]) for a in bars] == report["hourly"]["calls"]
    assert sorted(int(a["data-hour"]) for a in bars if "peak" in a["class"].split()) == [9, 10, 20]
    tallest = max(bars, key=lambda a: float(a["height"]))
    assert tallest["data-hour"] == "20" and float(tallest["height"]) == 140.0
    alert_bars = [a for a in p.find("rect") if "alerts" in a["class"].split()]
    assert [int(a["data-value"]) for a in alert_bars] == report["hourly"]["alerts"]
    assert [a["data-zone"] for a in p.find("tr") if "data-zone" in a][:4] == ["core", "A", "C", "outer"]
    assert "Worst zones by breaches" in page and "Worst zones by median response" in page
    assert p.find("div", id="status", data_status="final")


def test_html_escapes_what_comes_from_the_records(report):
    rep = copy.deepcopy(report)
    rep["zones"][0]["name"] = rep["worst_by_breaches"][1]["name"] = '<script>alert("x")</script> | A'
    page = render_html(rep, "zh")
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; | A" in page
    md = render_md(rep, "en")
    assert '<script>alert("x")</script> \\| A [A]' in md     # a | would cut the Markdown table


def test_an_empty_chart_does_not_divide_by_zero():
    svg = svg_bars([0] * 24, "none", "c")
    assert svg.count('height="0.0"') == 24


@pytest.mark.parametrize("fmt", ["md", "html", "json"])
def test_render_dispatches(report, fmt):
    text = render(report, fmt, "en")
    assert text.endswith("\n") and "2023-06-12" in text
