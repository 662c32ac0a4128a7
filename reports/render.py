"""The briefing as text: Markdown, a self-contained HTML page (inline CSS and SVG, no external
asset, so it can be mailed or opened offline) and JSON. Labels in Chinese or English; figures and
the JSON do not depend on the language."""

from __future__ import annotations

import html
from collections.abc import Collection
from typing import Any

import orjson

FORMATS = ("md", "html", "json")
LANGS = ("zh", "en")

#: per language: label -> text; "kinds" and "lang_names" map codes to names
LABELS: dict[str, dict[str, Any]] = {
    "zh": {
        "title": "每日研判", "status": "状态", "colon": "：", "final": "已定稿：{n} 个区域的记录均已过次日零时及宽限期",
        "in_progress": "进行中：{n} 个区域记录中 {f} 个已定稿，数字仍会变化", "as_of": "数据截至",
        "totals": "总体", "calls": "警情", "p1": "一级警情", "alerts": "告警", "arrived": "到场",
        "within_1m": "1分钟内", "within_3m": "3分钟内", "within_5m": "5分钟内", "breaches": "超时",
        "decided": "已判定", "p50": "中位响应", "p90": "P90 响应", "share": "占比",
        "zone_spread": "各区域中位响应 {min}–{max}（区域中位数 {med}）；"
                       "各区域 P90 {min90}–{max90}（区域中位数 {med90}）",
        "by_priority": "按级别", "by_category": "按类别", "by_type": "告警按类型", "prio": "{k}级",
        "by_kind": "按区域类型", "kind": "类型", "zones_n": "区域数",
        "worst_breaches": "超时最多的区域", "worst_median": "中位响应最慢的区域", "zone": "区域",
        "breach_rate": "超时占已判定", "none": "无",
        "hourly": "高峰时段", "hour": "时段", "chart_calls": "每小时警情", "chart_alerts": "每小时告警",
        "by_hour": "各小时警情（0–23 时）",
        "langs": "警情语种", "lang": "语种",
        "zones": "各区域", "final_col": "定稿", "yes": "是", "no": "否",
        "quiet": "另有 {n} 个区域当日无警情、告警和判定，未列出。",
        "notes": "说明",
        "rates": "占比均以已判定警情为分母（5分钟内到场 + 超时）；超时后才到场的按超时计。时间为 分:秒。",
        "counted_once": "总体数字（总数、1-3-5、中位/P90、时段、语种）每起警情和告警只计一次，无论落在几个"
                        "（嵌套）区域；不在任何区域内的警情和告警不计入。“按区域类型”为该类各区域之和："
                        "互不重叠的同类区域（如网格）是准确的。",
        "sums_over_zones": "本日记录来自较早版本（无 once 字段）：总数、时段和语种为各区域之和，区域可重叠"
                           "（场馆圈层位于巡逻网格内），一起警情落在几个区域就计几次。互不重叠的同类区域（如网格）"
                           "其“按区域类型”合计是准确的。",
        "overall_percentiles": "这些记录中没有各次响应时间，总体中位/P90 无法由各区域的分位数合成，"
                               "故不给出，改列各区域分位数的范围和区域中位数。",
        "unreadable": "{n} 条记录无法读取，已跳过：{keys}",
        "kinds": {"venue": "场馆", "district": "辖区", "grid": "网格", "route": "路线", "other": "其他"},
        "lang_names": {"zh": "中文", "en": "英语", "ug": "维吾尔语", "bo": "藏语", "mn": "蒙古语", "kk": "哈萨克语",
                       "ko": "朝鲜语", "ru": "俄语", "ja": "日语", "yue": "粤语", "und": "未标注"},
    },
    "en": {
        "title": "Daily briefing", "status": "Status", "colon": ": ",
        "final": "final: all {n} zone records are closed (past the next midnight and the grace)",
        "in_progress": "in progress: {f} of {n} zone records final, figures may still change", "as_of": "data as of",
        "totals": "Totals", "calls": "Calls", "p1": "Priority 1", "alerts": "Alerts", "arrived": "Arrived",
        "within_1m": "≤ 1 min", "within_3m": "≤ 3 min", "within_5m": "≤ 5 min", "breaches": "Breaches",
        "decided": "Decided", "p50": "p50", "p90": "p90", "share": "Share",
        "zone_spread": "Zone medians {min}–{max} (median of zones {med}); zone p90 {min90}–{max90} "
                       "(median of zones {med90})",
        "by_priority": "By priority", "by_category": "By category", "by_type": "Alerts by type", "prio": "P{k}",
        "by_kind": "By zone kind", "kind": "Kind", "zones_n": "Zones",
        "worst_breaches": "Worst zones by breaches", "worst_median": "Worst zones by median response",
        "zone": "Zone", "breach_rate": "Breached share", "none": "none",
        "hourly": "Hourly peaks", "hour": "Hour", "chart_calls": "Calls per hour", "chart_alerts": "Alerts per hour",
        "by_hour": "Calls by hour (0–23)",
        "langs": "Calls by language", "lang": "Language",
        "zones": "Zones", "final_col": "Final", "yes": "yes", "no": "no",
        "quiet": "Not listed: {n} zone(s) without calls, alerts or decisions that day.",
        "notes": "Notes",
        "rates": "Shares are of the decided calls (arrived within 5 min + breached); a late arrival after a "
                 "breach counts as the breach. Times are min:s.",
        "counted_once": "Overall figures (totals, 1-3-5, p50/p90, hours, languages) count each call and alert "
                        "once, however many (nested) zones hold it; calls and alerts in no zone are not counted. "
                        "By zone kind: sums over the kind's zones, exact for a kind whose zones do not overlap "
                        "(a grid).",
        "sums_over_zones": "This day's records come from an older worker (no `once`): totals, hours and languages "
                           "are sums over zones; zones may overlap (venue rings lie inside the patrol grid) and a "
                           "call in k zones counts k times. The totals by kind are exact for a kind whose zones do "
                           "not overlap (a grid).",
        "overall_percentiles": "These records do not carry each response time, and an overall p50/p90 cannot be "
                               "made from per-zone percentiles, so none is given: shown instead are the range and "
                               "the median of the zones' own figures.",
        "unreadable": "Skipped, unreadable: {n} record(s): {keys}",
        "kinds": {"venue": "venue", "district": "district", "grid": "grid", "route": "route", "other": "other"},
        "lang_names": {"zh": "Chinese", "en": "English", "ug": "Uyghur", "bo": "Tibetan", "mn": "Mongolian",
                       "kk": "Kazakh", "ko": "Korean", "ru": "Russian", "ja": "Japanese", "yue": "Cantonese",
                       "und": "not given"},
    },
}


def render(report: dict, fmt: str, lang: str = "zh") -> str:
    """The report in one of FORMATS."""
    if fmt == "json":
        return render_json(report)
    if fmt == "html":
        return render_html(report, lang)
    return render_md(report, lang)


def render_json(report: dict) -> str:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"


# ------------------------------------------------------------------------------------ helpers


def mmss(seconds) -> str:
    """140 -> '2:20'; None -> '—'."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def pct(rate) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _count_rate(n: int, rate) -> str:
    return f"{n} ({pct(rate)})" if rate is not None else str(n)


def _hour(h: int) -> str:
    return f"{h:02d}:00–{(h + 1) % 24:02d}:00"


def _lang_name(L: dict, tag: str) -> str:
    name = L["lang_names"].get(tag)
    return f"{name} ({tag})" if name else tag


def _status(report: dict, L: dict) -> str:
    if report["status"] == "final":
        text = L["final"].format(n=report["zones_total"])
    else:
        text = L["in_progress"].format(f=report["zones_final"], n=report["zones_total"])
    if report["as_of"]:
        text += f" · {L['as_of']} {report['as_of']}"
    return text


def _spread_line(report: dict, L: dict) -> str:
    p50, p90 = report["response"]["zone_p50_s"], report["response"]["zone_p90_s"]
    return L["zone_spread"].format(min=mmss(p50["min"]), max=mmss(p50["max"]), med=mmss(p50["median"]),
                                   min90=mmss(p90["min"]), max90=mmss(p90["max"]), med90=mmss(p90["median"]))


def _inline(items: dict, label=lambda k: k) -> str:
    return " · ".join(f"{label(k)} {n}" for k, n in items.items())


def _note_texts(report: dict, L: dict) -> list[str]:
    out = [L["rates"]]
    for code in report["notes"]:
        if code == "unreadable":
            keys = ", ".join(f"{k} ({why})" for k, why in report["unreadable"].items())
            out.append(L[code].format(n=len(report["unreadable"]), keys=keys))
        else:
            out.append(L[code])
    return out


def _active(report: dict) -> list[dict]:
    return [z for z in report["zones"] if z["calls"] or z["alerts"] or z["decided"] or z["response"]["arrived"]]


def _zone_label(z: dict) -> str:
    return z["name"] if z["name"] == z["zone_id"] else f"{z['name']} [{z['zone_id']}]"


# ----------------------------------------------------------------------------------- markdown


def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list], right_from: int = 1) -> list[str]:
    out = ["| " + " | ".join(_md_cell(h) for h in head) + " |",
           "|" + "|".join(":---" if i < right_from else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def render_md(report: dict, lang: str = "zh") -> str:
    L = LABELS[lang]
    r, t = report["response"], report["totals"]
    rates = r["rates"]
    lines = [f"# {L['title']} — {report['date']} ({report['tz']})", "",
             f"**{L['status']}**{L['colon']}{_status(report, L)}", "", f"## {L['totals']}", ""]
    lines += _md_table(
        [L["calls"], L["p1"], L["alerts"], L["arrived"], L["within_1m"], L["within_3m"], L["within_5m"],
         L["breaches"], L["decided"], L["p50"], L["p90"]],
        [[t["calls"], t["calls_by_priority"].get("1", 0), t["alerts"], r["arrived"],
          _count_rate(r["within_1m"], rates["within_1m"]), _count_rate(r["within_3m"], rates["within_3m"]),
          _count_rate(r["within_5m"], rates["within_5m"]), r["breaches"], r["decided"], mmss(r["p50_s"]),
          mmss(r["p90_s"])]], right_from=0)
    lines += ["", _spread_line(report, L), "",
              f"- {L['by_priority']}: {_inline(t['calls_by_priority'], lambda k: L['prio'].format(k=k)) or L['none']}",
              f"- {L['by_category']}: {_inline(t['calls_by_category']) or L['none']}",
              f"- {L['by_type']}: {_inline(t['alerts_by_type']) or L['none']}", "",
              f"## {L['by_kind']}", ""]
    lines += _md_table([L["kind"], L["zones_n"], L["calls"], L["alerts"], L["arrived"], L["within_5m"],
                        L["breaches"]],
                       [[L["kinds"].get(k["kind"], k["kind"]), k["zones"], k["calls"], k["alerts"], k["arrived"],
                         k["within_5m"], k["breaches"]] for k in report["by_kind"]])
    lines += ["", f"## {L['worst_breaches']}", ""]
    if report["worst_by_breaches"]:
        lines += _md_table(["#", L["zone"], L["breaches"], L["decided"], L["breach_rate"]],
                           [[i, _zone_label(z), z["breaches"], z["decided"], pct(z["breach_rate"])]
                            for i, z in enumerate(report["worst_by_breaches"], 1)], right_from=2)
    else:
        lines.append(L["none"])
    lines += ["", f"## {L['worst_median']}", ""]
    if report["worst_by_median"]:
        lines += _md_table(["#", L["zone"], L["p50"], L["p90"], L["arrived"]],
                           [[i, _zone_label(z), mmss(z["p50_s"]), mmss(z["p90_s"]), z["arrived"]]
                            for i, z in enumerate(report["worst_by_median"], 1)], right_from=2)
    else:
        lines.append(L["none"])
    lines += ["", f"## {L['hourly']}", ""]
    if report["peak_hours"]:
        lines += _md_table([L["hour"], L["calls"], L["alerts"]],
                           [[_hour(p["hour"]), p["calls"], p["alerts"]] for p in report["peak_hours"]])
    else:
        lines.append(L["none"])
    lines += ["", f"{L['by_hour']}: `{' '.join(str(n) for n in report['hourly']['calls'])}`", "",
              f"## {L['langs']}", ""]
    total = sum(x["calls"] for x in report["calls_by_lang"])
    lines += _md_table([L["lang"], L["calls"], L["share"]],
                       [[_lang_name(L, x["lang"]), x["calls"], pct(x["calls"] / total)]
                        for x in report["calls_by_lang"]]) if total else [L["none"]]
    lines += ["", f"## {L['zones']}", ""]
    active = _active(report)
    lines += _md_table(
        [L["zone"], L["kind"], L["final_col"], L["calls"], L["p1"], L["alerts"], L["arrived"], L["within_1m"],
         L["within_3m"], L["within_5m"], L["breaches"], L["p50"], L["p90"]],
        [[_zone_label(z), L["kinds"].get(z["kind"], z["kind"]) + (f" ({z['ring']})" if z["ring"] else ""),
          L["yes"] if z["final"] else L["no"], z["calls"], z["calls_p1"], z["alerts"], z["response"]["arrived"],
          z["response"]["within_1m"], z["response"]["within_3m"], z["response"]["within_5m"],
          z["response"]["breaches"], mmss(z["response"]["p50_s"]), mmss(z["response"]["p90_s"])] for z in active],
        right_from=3)
    quiet = len(report["zones"]) - len(active)
    if quiet:
        lines += ["", L["quiet"].format(n=quiet)]
    lines += ["", f"## {L['notes']}", ""] + [f"- {n}" for n in _note_texts(report, L)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- html

CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Microsoft YaHei","PingFang SC",system-ui,sans-serif;
margin:24px auto;max-width:1100px;color:#1d2330;background:#fff;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dce4;padding-bottom:4px}
.status{padding:6px 10px;border-radius:4px;display:inline-block;margin:6px 0}
.status.final{background:#e3f4ea;color:#17683a}.status.in_progress{background:#fff1dc;color:#8a4b00}
table{border-collapse:collapse;margin:6px 0;font-size:14px}
th,td{border:1px solid #d8dce4;padding:4px 8px;text-align:right}th{background:#f2f4f8}
td.l,th.l{text-align:left}.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{border:1px solid #d8dce4;border-radius:6px;padding:8px 12px;min-width:96px}
.kpi .v{font-size:22px;font-weight:600}.kpi .k{font-size:12px;color:#5a6272}
.kpi.bad .v{color:#c62828}.muted{color:#5a6272;font-size:13px}
.cols{display:flex;gap:32px;flex-wrap:wrap}
svg .bar{fill:#4a78c2}svg .bar.peak{fill:#e5383b}svg .bar.alerts{fill:#8c8fa3}svg text{font-size:10px;fill:#5a6272}
svg .val{fill:#1d2330}
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _table(head: list[str], rows: list[list], id_: str, left: int = 1, row_attrs: list[str] | None = None) -> str:
    ths = "".join(f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    body = []
    for j, row in enumerate(rows):
        tds = "".join(f'<td class="l">{_e(c)}</td>' if i < left else f"<td>{_e(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr{row_attrs[j] if row_attrs else ''}>{tds}</tr>")
    return f'<table id="{id_}"><thead><tr>{ths}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def svg_bars(values: list[int], title: str, id_: str, peaks: Collection[int] = (), cls: str = "") -> str:
    """A 24-bar chart of hourly counts: one `rect.bar` per hour (`.peak` on the busiest ones)."""
    w, gap, top, h, bottom, left = 40, 8, 16, 140, 18, 4
    width, height = left + 24 * w + 4, top + h + bottom
    peak = max(values) if any(values) else 1
    parts = [f'<svg id="{id_}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>']
    for hour, n in enumerate(values):
        bh = round(h * n / peak, 1)
        x = left + hour * w
        klass = " ".join(c for c in ("bar", cls, "peak" if hour in peaks else "") if c)
        parts.append(f'<rect class="{klass}" data-hour="{hour}" data-value="{n}" x="{x}" y="{top + h - bh}" '
                     f'width="{w - gap}" height="{bh}"><title>{_hour(hour)}: {n}</title></rect>')
        if n:
            parts.append(f'<text class="val" x="{x + (w - gap) / 2}" y="{top + h - bh - 3}" '
                         f'text-anchor="middle">{n}</text>')
        if hour % 3 == 0:
            parts.append(f'<text x="{x + (w - gap) / 2}" y="{top + h + 13}" text-anchor="middle">{hour:02d}</text>')
    parts.append(f'<line x1="{left}" y1="{top + h}" x2="{left + 24 * w - gap}" y2="{top + h}" stroke="#9aa1ad"/>')
    return "".join(parts) + "</svg>"


def render_html(report: dict, lang: str = "zh") -> str:
    L = LABELS[lang]
    r, t = report["response"], report["totals"]
    rates = r["rates"]
    kpis = [(L["calls"], t["calls"], ""), (L["p1"], t["calls_by_priority"].get("1", 0), ""),
            (L["alerts"], t["alerts"], ""), (L["arrived"], r["arrived"], ""),
            (L["within_1m"], _count_rate(r["within_1m"], rates["within_1m"]), ""),
            (L["within_3m"], _count_rate(r["within_3m"], rates["within_3m"]), ""),
            (L["within_5m"], _count_rate(r["within_5m"], rates["within_5m"]), ""),
            (L["breaches"], r["breaches"], " bad" if r["breaches"] else ""), (L["decided"], r["decided"], "")]
    peaks = {p["hour"] for p in report["peak_hours"]}
    parts = [
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(L['title'])} {_e(report['date'])}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(L['title'])} — {_e(report['date'])} <span class=\"muted\">({_e(report['tz'])})</span></h1>",
        f'<div id="status" class="status {_e(report["status"])}" data-status="{_e(report["status"])}">'
        f"{_e(_status(report, L))}</div>",
        f"<h2>{_e(L['totals'])}</h2><div class=\"kpis\" id=\"totals\">",
        *[f'<div class="kpi{bad}"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
          for k, v, bad in kpis],
        "</div>",
        f'<p class="muted" id="percentiles" data-p50="{_e(r["p50_s"])}" data-p90="{_e(r["p90_s"])}">'
        f'{_e(L["p50"])} / {_e(L["p90"])}: {_e(mmss(r["p50_s"]))} / {_e(mmss(r["p90_s"]))}. '
        f"{_e(_spread_line(report, L))}</p>",
        f"<p>{_e(L['by_priority'])}: "
        f"{_e(_inline(t['calls_by_priority'], lambda k: L['prio'].format(k=k)) or L['none'])}<br>"
        f"{_e(L['by_category'])}: {_e(_inline(t['calls_by_category']) or L['none'])}<br>"
        f"{_e(L['by_type'])}: {_e(_inline(t['alerts_by_type']) or L['none'])}</p>",
        f"<h2>{_e(L['hourly'])}</h2>",
        f"<div>{_e(L['chart_calls'])}</div>",
        svg_bars(report["hourly"]["calls"], L["chart_calls"], "chart-calls", peaks),
        f"<div>{_e(L['chart_alerts'])}</div>",
        svg_bars(report["hourly"]["alerts"], L["chart_alerts"], "chart-alerts", cls="alerts"),
        _table([L["hour"], L["calls"], L["alerts"]],
               [[_hour(p["hour"]), p["calls"], p["alerts"]] for p in report["peak_hours"]], "peaks"),
        '<div class="cols"><div>',
        f"<h2>{_e(L['worst_breaches'])}</h2>",
        _table(["#", L["zone"], L["breaches"], L["decided"], L["breach_rate"]],
               [[i, _zone_label(z), z["breaches"], z["decided"], pct(z["breach_rate"])]
                for i, z in enumerate(report["worst_by_breaches"], 1)], "worst-breaches", left=2,
               row_attrs=[f' data-zone="{_e(z["zone_id"])}"' for z in report["worst_by_breaches"]]),
        "</div><div>",
        f"<h2>{_e(L['worst_median'])}</h2>",
        _table(["#", L["zone"], L["p50"], L["p90"], L["arrived"]],
               [[i, _zone_label(z), mmss(z["p50_s"]), mmss(z["p90_s"]), z["arrived"]]
                for i, z in enumerate(report["worst_by_median"], 1)], "worst-median", left=2,
               row_attrs=[f' data-zone="{_e(z["zone_id"])}"' for z in report["worst_by_median"]]),
        "</div></div>",
    ]
    total = sum(x["calls"] for x in report["calls_by_lang"])
    active = _active(report)
    parts += [
        '<div class="cols"><div>',
        f"<h2>{_e(L['langs'])}</h2>",
        _table([L["lang"], L["calls"], L["share"]],
               [[_lang_name(L, x["lang"]), x["calls"], pct(x["calls"] / total)] for x in report["calls_by_lang"]],
               "langs"),
        "</div><div>",
        f"<h2>{_e(L['by_kind'])}</h2>",
        _table([L["kind"], L["zones_n"], L["calls"], L["alerts"], L["arrived"], L["within_5m"], L["breaches"]],
               [[L["kinds"].get(k["kind"], k["kind"]), k["zones"], k["calls"], k["alerts"], k["arrived"],
                 k["within_5m"], k["breaches"]] for k in report["by_kind"]], "by-kind"),
        "</div></div>",
        f"<h2>{_e(L['zones'])}</h2>",
        _table([L["zone"], L["kind"], L["final_col"], L["calls"], L["p1"], L["alerts"], L["arrived"],
                L["within_1m"], L["within_3m"], L["within_5m"], L["breaches"], L["p50"], L["p90"]],
               [[_zone_label(z), L["kinds"].get(z["kind"], z["kind"]) + (f" ({z['ring']})" if z["ring"] else ""),
                 L["yes"] if z["final"] else L["no"], z["calls"], z["calls_p1"], z["alerts"],
                 z["response"]["arrived"], z["response"]["within_1m"], z["response"]["within_3m"],
                 z["response"]["within_5m"], z["response"]["breaches"], mmss(z["response"]["p50_s"]),
                 mmss(z["response"]["p90_s"])] for z in active], "zones", left=3,
               row_attrs=[f' data-zone="{_e(z["zone_id"])}"' for z in active]),
    ]
    quiet = len(report["zones"]) - len(active)
    if quiet:
        parts.append(f'<p class="muted">{_e(L["quiet"].format(n=quiet))}</p>')
    parts.append(f"<h2>{_e(L['notes'])}</h2><ul id=\"notes\">"
                 + "".join(f"<li>{_e(n)}</li>" for n in _note_texts(report, L)) + "</ul></body></html>\n")
    return "\n".join(parts)
