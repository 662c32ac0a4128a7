"""A drill as text (CONTRACT §11): json (exactly the §11 object), Markdown (one table overall and
one per zone: baseline, variant, difference) and a self-contained HTML page (inline CSS and SVG,
no script: per-zone bars of the calls reached within 3 minutes and the period's hourly curves).

`render(result, fmt)` takes what zonewatch/drill_run.py returns: {"report": the §11 object,
"hourly": {"baseline": {...}, "variant": {...}} (reports.drill.hourly), "names": {zone_id: name}}.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from reports.drill import FIG_FIELDS, difference
from reports.render import _e, _md_table, mmss

FORMATS = ("md", "html", "json")
LABELS = {"calls": "calls", "arrived": "arrived", "within_1m": "≤ 1 min", "within_3m": "≤ 3 min",
          "within_5m": "≤ 5 min", "breaches": "breaches", "p50_s": "p50", "p90_s": "p90",
          "tiers_met": "tiers met", "tiers_decided": "tiers decided",
          "post_minutes_understaffed": "post-min understaffed", "post_minutes_empty": "post-min empty",
          "checkpoint_misses": "checkpoint misses", "reach_3m_mean": "mean reach ≤ 3 min"}
#: zone columns of the per-zone table (the full FIG is in the json)
ZONE_COLUMNS = ("calls", "within_3m", "breaches", "p50_s", "tiers_met", "post_minutes_empty", "reach_3m_mean")


def render(result: dict, fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(result["report"], option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "html":
        return render_html(result)
    return render_md(result)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _value(field: str, v) -> str:
    if v is None:
        return "—"
    if field in ("p50_s", "p90_s"):
        return mmss(v)
    if field == "reach_3m_mean":
        return f"{v * 100:.1f}%"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _delta(field: str, d) -> str:
    if d is None or d == 0:
        return "" if d == 0 else "—"
    sign = "+" if d > 0 else "−"
    if field in ("p50_s", "p90_s"):
        return sign + mmss(abs(d))
    if field == "reach_3m_mean":
        return f"{sign}{abs(d) * 100:.1f} pt"
    return f"{sign}{abs(d):g}"


def _title(rep: dict) -> str:
    return f"Drill {_when(rep['from'])} – {_when(rep['to'])}"


def _overall_rows(rep: dict) -> list[list]:
    base, var = rep["baseline"]["overall"], rep["variant"]["overall"]
    est = (rep.get("estimate") or {}).get("overall")
    diff = difference(base, var)
    rows = []
    for f in FIG_FIELDS:
        row = [LABELS[f], _value(f, base[f]), _value(f, var[f]), _delta(f, diff[f])]
        if est is not None:
            row.append(_value(f, est.get(f)))
        rows.append(row)
    return rows


def _zone_ids(rep: dict) -> list[str]:
    return sorted(set(rep["baseline"]["zones"]) | set(rep["variant"]["zones"]))


def _zone_cells(rep: dict, zid: str) -> list[str]:
    empty = dict.fromkeys(FIG_FIELDS)
    base, var = rep["baseline"]["zones"].get(zid, empty), rep["variant"]["zones"].get(zid, empty)
    diff = difference(base, var)
    cells = []
    for f in ZONE_COLUMNS:
        d = _delta(f, diff[f])
        cells.append(f"{_value(f, base[f])} → {_value(f, var[f])}" + (f" ({d})" if d else ""))
    return cells


def render_md(result: dict) -> str:
    rep, names = result["report"], result.get("names", {})
    head = ["", "baseline", "variant", "Δ"] + (["estimate"] if rep.get("estimate") else [])
    lines = [f"# {_title(rep)}", "", "## Overall (each call once)", ""]
    lines += _md_table(head, _overall_rows(rep))
    lines += ["", "## Per zone (baseline → variant (Δ))", ""]
    rows = [[f"{names.get(z, z)} ({z})" if names.get(z, z) != z else z] + _zone_cells(rep, z) for z in _zone_ids(rep)]
    lines += _md_table(["zone"] + [LABELS[f] for f in ZONE_COLUMNS], rows)
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:24px;color:#1d2330;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #d8dce4;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #d8dce4;padding:3px 8px;text-align:right}
th{background:#f2f4f8}td.l,th.l{text-align:left}svg text{font-size:10px;fill:#5a6272}
.base{fill:#8c8fa3;stroke:#8c8fa3}.variant{fill:#4a78c2;stroke:#4a78c2}.legend span{margin-right:14px}
"""


def _table(head: list[str], rows: list[list], id_: str) -> str:
    ths = "".join(f'<th class="l">{_e(h)}</th>' if i == 0 else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="l">{_e(c)}</td>' if i == 0 else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table id="{id_}"><thead><tr>{ths}</tr></thead><tbody>{body}</tbody></table>'


def svg_zone_bars(rep: dict, names: dict, field: str = "within_3m") -> str:
    """Per zone two horizontal bars (baseline grey, variant blue) of `field`."""
    zids = _zone_ids(rep)
    row, label_w, bar_w = 22, 220, 520
    peak = max([rep[d]["zones"].get(z, {}).get(field) or 0 for d in ("baseline", "variant") for z in zids] + [1])
    height = row * len(zids) + 10
    parts = [f'<svg id="zone-bars" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 60}" '
             f'height="{height}" role="img" aria-label="{_e(LABELS[field])} per zone">']
    for i, z in enumerate(zids):
        y = 4 + i * row
        parts.append(f'<text x="0" y="{y + 13}">{_e(names.get(z, z))}</text>')
        for j, (dep, cls) in enumerate((("baseline", "base"), ("variant", "variant"))):
            v = rep[dep]["zones"].get(z, {}).get(field) or 0
            w = round(bar_w * v / peak, 1)
            parts.append(f'<rect class="bar {cls}" data-zone="{_e(z)}" data-value="{v}" x="{label_w}" '
                         f'y="{y + j * 9}" width="{w}" height="8"><title>{_e(z)} {dep}: {v}</title></rect>')
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 13}">'
                     f'{rep["baseline"]["zones"].get(z, {}).get(field) or 0} → '
                     f'{rep["variant"]["zones"].get(z, {}).get(field) or 0}</text>')
    return "".join(parts) + "</svg>"


def svg_curves(hourly: dict, key: str, id_: str, title: str) -> str:
    """The period's hourly curve of `key` for the baseline and the variant (polylines)."""
    base, var = hourly["baseline"][key], hourly["variant"][key]
    n = max(len(base), len(var), 1)
    w, h, top, left = 720, 150, 12, 30
    peak = max(base + var + [1])

    def points(vs: list[int]) -> str:
        step = w / max(n - 1, 1)
        return " ".join(f"{left + i * step:.1f},{top + h - h * v / peak:.1f}" for i, v in enumerate(vs))

    ticks = "".join(f'<text x="{left + i * w / max(n - 1, 1):.1f}" y="{top + h + 14}" text-anchor="middle">+{i}h</text>'
                    for i in range(0, n, max(1, n // 12)))
    return (f'<svg id="{id_}" xmlns="http://www.w3.org/2000/svg" width="{left + w + 20}" height="{top + h + 22}" '
            f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
            f'<text x="0" y="{top + 4}">{peak}</text>'
            f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#9aa1ad"/>'
            f'<polyline class="base" fill="none" stroke-width="2" points="{points(base)}" style="fill:none"/>'
            f'<polyline class="variant" fill="none" stroke-width="2" points="{points(var)}" style="fill:none"/>'
            f"{ticks}</svg>")


def render_html(result: dict) -> str:
    rep, names, hourly = result["report"], result.get("names", {}), result["hourly"]
    head = ["", "baseline", "variant", "Δ"] + (["estimate"] if rep.get("estimate") else [])
    zone_rows = [[names.get(z, z)] + _zone_cells(rep, z) for z in _zone_ids(rep)]
    legend = ('<p class="legend"><span style="color:#8c8fa3">■ baseline</span>'
              '<span style="color:#4a78c2">■ variant</span></p>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(_title(rep))}</title>'
            f"<style>{CSS}</style></head><body><h1>{_e(_title(rep))}</h1>"
            f"<h2>Overall (each call once)</h2>{_table(head, _overall_rows(rep), 'overall')}"
            f"<h2>Calls reached within 3 minutes, per zone</h2>{legend}{svg_zone_bars(rep, names)}"
            f"<h2>By hour</h2>{legend}"
            f"{svg_curves(hourly, 'calls', 'curve-calls', 'calls per hour')}"
            f"{svg_curves(hourly, 'within_3m', 'curve-within-3m', 'calls reached within 3 min per hour')}"
            f"<h2>Per zone (baseline → variant (Δ))</h2>"
            f"{_table(['zone'] + [LABELS[f] for f in ZONE_COLUMNS], zone_rows, 'zones')}"
            "</body></html>\n")
