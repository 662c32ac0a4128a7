"""`zonewatch plan check FILE`: validate a duty plan (CONTRACT §8, §10) and print it.

The face only: contract.plan reads and validates (a refusal names the entry and the reason and
exits 2, as every ZonewatchError does); this prints the phases, posts, checkpoints and tiers.

    zonewatch plan check contract/data/plans/marathon.toml
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from contract.plan import DEFAULT_ON_SCENE, Plan, load_plan


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the duty plan (勤务方案): check a plan file",
                       description="Duty plan tools (CONTRACT §10).")
    cmds = p.add_subparsers(dest="plan_command", metavar="ACTION", required=True)
    c = cmds.add_parser("check", help="validate a plan and print its phases, posts and checkpoints",
                        description="Validate a duty plan (TOML) as the worker does at start and print its "
                                    "phases, posts, checkpoints and tier requirements; a bad plan is refused "
                                    "with the entry and the reason (exit 2).")
    c.add_argument("file", type=Path, help="the plan file")
    c.add_argument("--tz", default=None,
                   help="time zone of times without an offset when the plan names none (default ZONEWATCH_TZ)")
    c.set_defaults(func=run)


def run(args) -> int:
    tz = args.tz or os.environ.get("ZONEWATCH_TZ") or "Asia/Shanghai"
    print(describe(load_plan(args.file, default_tz=tz)), end="")
    return 0


def describe(plan: Plan) -> str:
    """The plan as text: phases in local time, then posts, checkpoints and tiers, one a line."""
    tz = ZoneInfo(plan.timezone)
    names = plan.phase_names

    def local(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")

    def per_phase(values: dict[str, int]) -> str:
        return ", ".join(f"{n} {values[n]}" for n in names if n in values) or "none"

    out = [f"plan {plan.source}: OK (timezone {plan.timezone})",
           f"phases ({len(plan.phases)}):"]
    out += [f"  {p.name:<8} {local(p.start)} -> {local(p.end)}" for p in plan.phases]
    out.append(f"posts ({len(plan.posts)}):")
    for p in plan.posts:
        out.append(f"  {p.post_id:<14} {p.name}  ({p.lat:.6f}, {p.lon:.6f}) r {p.radius_m:g} m; "
                   f"required: {per_phase(p.required)}; forces: {', '.join(p.forces)}")
    out.append(f"checkpoints ({len(plan.checkpoints)}):")
    for c in plan.checkpoints:
        every = ", ".join(f"{n} {c.every_s[n]} s" for n in names if n in c.every_s) or "never"
        out.append(f"  {c.checkpoint_id:<14} {c.name}  ({c.lat:.6f}, {c.lon:.6f}) r {c.radius_m:g} m; every: {every}")
    out.append(f"tiers ({len(plan.tiers)}; elsewhere {'/'.join(map(str, DEFAULT_ON_SCENE))}):")
    out += [f"  {t.pattern:<14} on scene by 1/3/5 min: {'/'.join(map(str, t.on_scene))}" for t in plan.tiers]
    return "\n".join(out) + "\n"
