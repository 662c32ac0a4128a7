"""Text and Markdown renderings of a bench result (bench/run.py's JSON)."""

from __future__ import annotations

from .measure import spread

RATE_KEYS = {"a", "b", "w", "achieved", "lag", "behind"}
RATIO_KEYS = {"w_over_a", "w_over_b"}
SECONDS_KEYS = {"p50", "p99", "sse_p50", "sse_p99"}
PCT_KEYS = {"sse_cost"}
PLAIN_S_KEYS = {"catch_up"}

#: (key, label, path into a unit's result) of every figure reported as min / median / max
FIGURES = [
    ("a", "A: bare aiokafka consumer, events/s", ("baseline_a", "events_per_s")),
    ("b", "B: trivial Faust agent, events/s", ("baseline_b", "events_per_s")),
    ("w", "W: zonewatch worker, backlog events/s", ("worker", "events_per_s")),
    ("w_over_a", "W / A", ("ratio_a",)),
    ("w_over_b", "W / B", ("ratio_b",)),
    ("p50", "latency p50 (s)", ("latency", "e2e", "p50_s")),
    ("p99", "latency p99 (s)", ("latency", "e2e", "p99_s")),
    ("achieved", "achieved offered events/s", ("latency", "achieved_rate")),
    ("catch_up", "caught up after the last send (s)", ("latency", "catch_up_after_last_send_s")),
    ("lag", "zonewatch_consumer_lag max, all groups (messages)", ("latency", "consumer_lag_max_total")),
    ("behind", "max events offered but not yet counted (bench's view)", ("latency", "max_offered_minus_counted")),
    ("cmds_all", "Redis commands executed per event (scripts' included)",
     ("latency", "redis", "commands_per_event_all")),
    ("cmds_top", "Redis commands the worker sent per event (top-level)", ("latency", "redis", "top_level_per_event")),
    ("scripts", "EVAL/EVALSHA per event", ("latency", "redis", "script_calls_per_event")),
    ("zone_writes", "zone writes per event (zonewatch_zone_writes_total)",
     ("latency", "redis", "zone_writes_per_event")),
    ("zone_xadd", "zone-updates XADDs per event (Redis entries-added)",
     ("latency", "redis", "zone_updates_xadd_per_event")),
    ("zone_sets_mon", "SET zw:zone:* per event (MONITOR sample)", ("latency", "monitor", "zone_sets_per_event")),
    ("top_mon", "worker's top-level commands per event (MONITOR sample)",
     ("latency", "monitor", "worker_top_level_per_event")),
    ("sse_p50", "with SSE subscribers: p50 (s)", ("latency_sse", "e2e", "p50_s")),
    ("sse_p99", "with SSE subscribers: p99 (s)", ("latency_sse", "e2e", "p99_s")),
    ("sse_cost", "with SSE subscribers: p99 increase (%)", ("sse_p99_increase_pct",)),
    ("sse_cmds", "with SSE: Redis commands executed per event (worker + gateway)",
     ("latency_sse", "redis", "commands_per_event_all")),
]


#: latency figures -> where a run says its value lies beyond the histogram's largest finite bucket
#: (the value is then only a lower bound, printed with "≥")
BEYOND = {"p50": ("latency", "e2e", "p50_beyond_last_bucket"), "p99": ("latency", "e2e", "p99_beyond_last_bucket"),
          "sse_p50": ("latency_sse", "e2e", "p50_beyond_last_bucket"),
          "sse_p99": ("latency_sse", "e2e", "p99_beyond_last_bucket")}


def fmt_rate(v) -> str:
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "—"


def fmt_ms(v) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    return f"{v:,.2f} s" if v >= 10 else f"{v * 1000:,.1f} ms"


def fmt_fig(key: str, v, lower_bounds=()) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    if v in lower_bounds:
        return "≥ " + fmt_fig(key, v)
    if key in RATE_KEYS:
        return fmt_rate(v)
    if key in RATIO_KEYS:
        return f"{v:.3f}"
    if key in SECONDS_KEYS:
        return fmt_ms(v)
    if key in PCT_KEYS:
        return f"{v:+.0f} %"
    if key in PLAIN_S_KEYS:
        return f"{v:.1f} s"
    return f"{v:.3f}"


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _runs_of(result: dict, zs: str) -> list[dict]:
    return [u for u in result["units"] if u["zone_set"] == zs]


def _zs_title(result: dict, zs: str) -> str:
    z = next((z for z in result["config"]["zone_sets"] if z["name"] == zs), {})
    stress = " — stress (units jump anywhere)" if result["config"].get("stress") else ""
    return f"{zs}: {z.get('what', '')}{stress}"


def _kept(fig: dict) -> str:
    return f"{fig['yes']} of {fig['of']}" if fig.get("of") else "—"


def _header(result: dict) -> list[str]:
    m, c = result["machine"], result["config"]
    load = "/".join(f"{x:.1f}" for x in m.get("loadavg_start") or [])
    load_end = "/".join(f"{x:.1f}" for x in m.get("loadavg_end") or [])
    return [f"zonewatch bench {result['run_id']} ({result['started_at']}), commit {m.get('commit')}, "
            f"{m.get('cpus')} × {m.get('cpu')}, Python {m.get('python')}, Kafka {m.get('kafka')}, "
            f"Redis {m.get('redis')}; "
            f"load average {load} at start, {load_end} at end; took {result['duration_s'] / 60:.1f} min",
            f"{c['runs']} run(s); backlog {c['events']:,} messages ({_mix(c)}, ~{c['dup_rate']:.1%} duplicates, "
            f"~{c['invalid_rate']:.1%} invalid; {c['units']:,} units, {c['cameras']:,} cameras, "
            f"{c['stream_rate']:g} events per second of event time), {c['partitions']} partitions; latency at "
            f"{c['rate']:,} ev/s offered for {c['seconds']:g} s; {c['sse_clients']} SSE subscribers"]


def _mix(c: dict) -> str:
    return " / ".join(f"{w * 100:g} % {src}" for src, w in c["mix"].items())


def render_text(result: dict) -> str:
    lines = [""] + _header(result)
    for zs, figs in result["summary"].items():
        runs = _runs_of(result, zs)
        lines += ["", _zs_title(result, zs), f"{'figure':<66}{'min':>12}{'median':>12}{'max':>12}   runs", "-" * 130]
        for key, label, _path in FIGURES:
            f = figs[key]
            lb = f.get("lower_bounds", ())
            vals = ", ".join(fmt_fig(key, _get(u, *_path), lb) for u in runs)
            lines.append(f"{label:<66}{fmt_fig(key, f['min'], lb):>12}{fmt_fig(key, f['median'], lb):>12}"
                         f"{fmt_fig(key, f['max'], lb):>12}   {vals}")
        lines.append(f"{'worker kept up at the offered load':<66}{_kept(figs['kept_up']):>36}")
        lines.append(f"{'... with SSE subscribers':<66}{_kept(figs['sse_kept_up']):>36}")
        for u in runs:
            for what, ph in (("latency", u.get("latency")), ("latency with SSE", u.get("latency_sse"))):
                if ph and ph.get("failure"):
                    lines.append(f"run {u['run']}: {what} FAILED: {ph['failure']}")
            w = u.get("worker") or {}
            if not w.get("completed"):
                lines.append(f"run {u['run']}: worker backlog DID NOT COMPLETE: {w.get('failure')}")
            if w.get("accepted_missing"):
                lines.append(f"run {u['run']}: {w['accepted_missing']:,.0f} valid backlog events never counted "
                             "accepted")
            if u.get("profile"):
                p = u["profile"].get("profile") or {}
                lines.append(f"run {u['run']}: py-spy flame graph {p.get('svg')} "
                             f"({'written' if p.get('written') else 'NOT written'})")
    for s in result.get("scaling") or []:
        lines += ["", *scaling_lines(s)]
    return "\n".join(lines)


def scaling_lines(s: dict, md: bool = False) -> list[str]:
    one, two = s.get("one") or {}, s.get("two") or {}
    groups = sorted({g for x in (one, two) for g in ((x.get("cpu") or {}).get("cores") or {})},
                    key=lambda g: (not g.startswith("worker"), g))
    head = (f"scaling on {s['zone_set']}: {s['events']:,} messages, {s['partitions']} partitions — backlog to "
            f"final zone state: 1 worker {fmt_rate(one.get('events_per_s_to_final_state'))} ev/s, 2 workers "
            f"{fmt_rate(two.get('events_per_s_to_final_state'))} ev/s, ratio "
            f"{fmt_fig('w_over_a', s.get('ratio_to_final_state'))}; counted (zonewatch_events_total 5 % → 95 %): "
            f"{fmt_rate(one.get('events_per_s'))} and {fmt_rate(two.get('events_per_s'))} ev/s; read by ingest "
            f"(committed offsets 5 % → 95 %): {fmt_rate(one.get('events_per_s_committed'))} and "
            f"{fmt_rate(two.get('events_per_s_committed'))} ev/s")
    rows = []
    for name, x in (("1 worker", one), ("2 workers", two)):
        cpu = x.get("cpu") or {}
        cores = cpu.get("cores") or {}
        cells = [f"{cores[g]:.2f}" if g in cores else "—" for g in groups]
        rows.append((name, fmt_rate(x.get("events_per_s_to_final_state")), cells,
                     cpu.get("machine_busy"), cpu.get("other")))
    fails = [f"{name}: {x['failure']}" for name, x in (("1 worker", one), ("2 workers", two)) if x.get("failure")]
    fails += [f"{name}: {x['accepted_missing']:,.0f} valid events never counted accepted"
              for name, x in (("1 worker", one), ("2 workers", two)) if x.get("accepted_missing")]
    zc = s.get("zones_compared")
    if zc:
        fails.append(f"final zone states of 1 and 2 workers: {zc['zones_differing']} of {zc['zones']} zones differ"
                     + (f" (day's calls {zc['today_calls'][0]:,} vs {zc['today_calls'][1]:,}, alerts "
                        f"{zc['today_alerts'][0]:,} vs {zc['today_alerts'][1]:,})" if zc["zones_differing"] else ""))
    if fails:
        head += " (" + "; ".join(fails) + ")"
    if md:
        out = [f"**{head}.** CPU in cores over the measured stretch (5 % → 95 % of the backlog counted or "
               "committed by ingest), from /proc/<pid>/stat utime+stime:", "",
               "| workers | events/s to final state | " + " | ".join(groups) + " | machine busy | other processes |",
               "|---|---:|" + "---:|" * (len(groups) + 2)]
        for name, rate, cells, busy, other in rows:
            out.append(f"| {name} | {rate} | " + " | ".join(cells) + f" | {_c(busy)} | {_c(other)} |")
        return out
    out = [head, "  CPU (cores, 5 % → 95 % of the backlog): " + ", ".join(groups) + ", machine busy, other"]
    for name, rate, cells, busy, other in rows:
        out.append(f"  {name:<10} {rate:>10} ev/s   " + "  ".join(f"{c:>6}" for c in cells)
                   + f"  {_c(busy):>6}  {_c(other):>6}")
    return out


def _c(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "—"


def render_markdown(result: dict) -> str:
    m, c = result["machine"], result["config"]
    date = result["started_at"][:10]
    out = [f"### {date} — commit `{m.get('commit')}`, {c['runs']} run(s){' — stress' if c.get('stress') else ''}",
           "", f"`{result['command']}` on {m.get('cpus')} × {m.get('cpu')}; Kafka {m.get('kafka')} and Redis "
           f"{m.get('redis')} on the same machine; Python {m.get('python')}, faust-streaming "
           f"{m.get('packages', {}).get('faust-streaming')}, aiokafka {m.get('packages', {}).get('aiokafka')}. "
           f"Backlog: {c['events']:,} messages ({_mix(c)}; {c['units']:,} patrol units "
           f"{'jumping anywhere' if c.get('stress') else 'walking'}, {c['cameras']:,} cameras), "
           f"{c['partitions']} partitions. Latency: {c['rate']:,} events/s offered for {c['seconds']:g} s. "
           f"Load average {'/'.join(f'{x:.1f}' for x in m.get('loadavg_start') or [])} at start. "
           f"The bench took {result['duration_s'] / 60:.1f} min."]
    for zs, figs in result["summary"].items():
        runs = _runs_of(result, zs)
        out += ["", f"**{_zs_title(result, zs)}** (min / median / max of {len(runs)} run(s))", "",
                "| figure | min | median | max |", "|---|---:|---:|---:|"]
        for key, label, _path in FIGURES:
            f = figs[key]
            lb = f.get("lower_bounds", ())
            out.append(f"| {label} | {fmt_fig(key, f['min'], lb)} | {fmt_fig(key, f['median'], lb)} | "
                       f"{fmt_fig(key, f['max'], lb)} |")
        out.append(f"| worker kept up at the offered load | {_kept(figs['kept_up'])} | | |")
        out.append(f"| ... with SSE subscribers | {_kept(figs['sse_kept_up'])} | | |")
        out += ["", "Raw runs:", "",
                "| run | A ev/s | B ev/s | W ev/s | W/A | W/B | p50 / p99 | kept up | lag max | Redis cmds/ev "
                "(all / top-level) | zone writes/ev | SSE p50 / p99 | SSE subscribers got | unit took |",
                "|---|---:|---:|---:|---:|---:|---|---|---:|---|---:|---|---|---:|"]
        for u in runs:
            L, S = u.get("latency") or {}, u.get("latency_sse") or {}
            r = L.get("redis") or {}
            sse = S.get("sse") or {}
            got = (f"{sse.get('zone_events_per_client_min'):,}–{sse.get('zone_events_per_client_median'):,} zone "
                   f"events, {sse.get('resyncs')} resyncs, {len(sse.get('errors') or [])} client errors"
                   if sse.get("connected") else "—")
            out.append(
                f"| {u['run']} | {fmt_rate(_get(u, 'baseline_a', 'events_per_s'))} | "
                f"{fmt_rate(_get(u, 'baseline_b', 'events_per_s'))} | {fmt_rate(_get(u, 'worker', 'events_per_s'))} | "
                f"{fmt_fig('w_over_a', u.get('ratio_a'))} | {fmt_fig('w_over_b', u.get('ratio_b'))} | "
                f"{_lat(L, 'p50')} / {_lat(L, 'p99')} | "
                f"{'yes' if L.get('kept_up') else 'no' if L else '—'} | {fmt_rate(L.get('consumer_lag_max_total'))} | "
                f"{fmt_fig('', r.get('commands_per_event_all'))} / {fmt_fig('', r.get('top_level_per_event'))} | "
                f"{fmt_fig('', r.get('zone_writes_per_event'))} | "
                f"{_lat(S, 'p50')} / {_lat(S, 'p99')} | {got} | {_min(u.get('duration_s'))} |")
        mon = [u["latency"]["monitor"] for u in runs if _get(u, "latency", "monitor", "commands")]
        if mon:
            out += ["", "Redis commands per event in the MONITOR samples (median over runs; `lua` = run by the "
                    "worker's script, not sent):", ""]
            out += _monitor_table(mon)
        cpus = [u["latency"]["cpu"] for u in runs if _get(u, "latency", "cpu", "cores")]
        if cpus:
            out += ["", f"CPU during the latency phase (cores, median over runs): {_cpu_txt(cpus)}."]
        cpus = [u["latency_sse"]["cpu"] for u in runs if _get(u, "latency_sse", "cpu", "cores")]
        if cpus:
            out += [f"With SSE subscribers: {_cpu_txt(cpus)}."]
        profs = [(u.get("profile") or {}).get("profile") or {} for u in runs if u.get("profile")]
        for p in profs:
            if p.get("written"):
                out += ["", f"Flame graph of the worker on this backlog (py-spy): `{_rel(p['svg'])}`."]
    for s in result.get("scaling") or []:
        out += [""] + scaling_lines(s, md=True)
    return "\n".join(out)


def _min(seconds) -> str:
    return f"{seconds / 60:.1f} min" if isinstance(seconds, (int, float)) else "—"


def _lat(phase: dict, q: str) -> str:
    v = _get(phase, "e2e", f"{q}_s")
    return ("≥ " if _get(phase, "e2e", f"{q}_beyond_last_bucket") else "") + fmt_ms(v)


def _rel(path: str) -> str:
    i = path.find("docs/")
    return path[i:] if i >= 0 else path


def _monitor_table(mon: list[dict]) -> list[str]:
    whos = sorted({w for x in mon for w in x["commands"]}, key=lambda w: (w != "worker", w))
    out = ["| sent by | commands per event | by command |", "|---|---:|---|"]
    for who in whos:
        per_ev = spread(_get(x, "per_event", who) for x in mon)["median"]
        cmds: dict[str, list[float]] = {}
        for x in mon:
            ev = x.get("events") or 0
            for cmd, n in x["commands"].get(who, {}).items():
                cmds.setdefault(cmd, []).append(n / ev if ev else 0.0)
        top = sorted(((cmd, spread(v)["median"]) for cmd, v in cmds.items()), key=lambda kv: -kv[1])[:8]
        out.append(f"| {who} | {fmt_fig('', per_ev)} | " + ", ".join(f"{c} {v:.3f}" for c, v in top) + " |")
    z = spread(x.get("zone_sets_per_event") for x in mon)["median"]
    out.append(f"| (SET of a zone document, any sender) | {fmt_fig('', z)} | |")
    return out


def _cpu_txt(cpus: list[dict]) -> str:
    groups = sorted({g for c in cpus for g in c["cores"]}, key=lambda g: (not g.startswith("worker"), g))
    parts = [f"{g} {spread(c['cores'].get(g) for c in cpus)['median']:.2f}" for g in groups]
    parts.append(f"machine busy {spread(c.get('machine_busy') for c in cpus)['median']:.2f}")
    parts.append(f"other processes {spread(c.get('other') for c in cpus)['median']:.2f}")
    return ", ".join(parts)
