"""The simulation report: a JSON file, PNG plots and a summary table."""

from __future__ import annotations

import json
from pathlib import Path

PLOTS = ("exceptions", "automation", "backlog")


def write_report(result, directory: Path, *, plots: bool = True, prefix: str = "sim") -> dict:
    """Write `<prefix>-report.json` and `<prefix>-{exceptions,automation,backlog}.png`
    into `directory`; return the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / f"{prefix}-report.json"}
    document = {"config": result.config, "summary": result.summary, "series": result.series}
    paths["json"].write_text(json.dumps(document, indent=2, default=str) + "\n")
    if plots:
        paths.update(write_plots(result, directory, prefix=prefix))
    return paths


def write_plots(result, directory: Path, *, prefix: str = "sim") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = result.series
    title = (
        f"{result.config['program']}: {result.config['participants']} participants, "
        f"{result.config['days']} days, seed {result.config['seed']}"
    )
    days = [d[5:] for d in series["days"]]
    out = {}

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    ax.bar(days, series["exceptions_per_100_per_day"], color="#c0504d")
    ax.set_ylabel("exceptions / 100 active / day")
    ax.set_title(f"Exceptions per 100 participants per day\n{title}", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    out["exceptions"] = directory / f"{prefix}-exceptions.png"
    fig.savefig(out["exceptions"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    rates = [r if r is not None else float("nan") for r in series["automation_rate"]]
    ax.plot(days, rates, marker="o", color="#4f81bd")
    ax.set_ylim(0, 105)
    ax.set_ylabel("% step completions automated")
    ax.set_title(f"Automation rate\n{title}", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    out["automation"] = directory / f"{prefix}-automation.png"
    fig.savefig(out["automation"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    hourly = series["backlog_hourly"]
    ax.plot(range(len(hourly)), [n for _, n in hourly], color="#9bbb59")
    ticks = list(range(0, len(hourly), 24))
    ax.set_xticks(ticks)
    ax.set_xticklabels([hourly[i][0][5:10] for i in ticks], rotation=45, fontsize=7)
    ax.set_ylabel("open queue items")
    ax.set_title(f"Exception backlog over time (hourly)\n{title}", fontsize=9)
    fig.tight_layout()
    out["backlog"] = directory / f"{prefix}-backlog.png"
    fig.savefig(out["backlog"])
    plt.close(fig)
    return out


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    enrollments = ", ".join(f"{k} {v}" for k, v in summary["enrollments"].items() if v)
    kinds = ", ".join(f"{k} {v}" for k, v in summary["exceptions_by_kind"].items())

    def fmt(value, suffix=""):
        return "—" if value is None else f"{value}{suffix}"

    return [
        ("participants x days", f"{summary['participants']} x {summary['days']}"),
        ("enrollments by state", enrollments or "—"),
        ("exceptions opened", f"{summary['exceptions_opened']} ({kinds or 'none'})"),
        (
            "exceptions resolved",
            f"{summary['exceptions_resolved']} "
            f"({summary['exceptions_auto_resolved']} by themselves)",
        ),
        ("still in the queue", str(summary["exceptions_active_at_end"])),
        ("median time to resolve", fmt(summary["median_time_to_resolve_h"], " h")),
        (
            "step completions",
            f"{summary['step_completions_automated']} automated, "
            f"{summary['step_completions_manual']} manual",
        ),
        ("automation rate", fmt(summary["automation_rate"], " %")),
        ("manual interventions", str(summary["manual_interventions"])),
        ("strain index (per 100 active / week)", fmt(summary["strain_index"])),
        (
            "partner events",
            f"{summary['partner_events']} stored; {summary['partner_events_late']} late, "
            f"{summary['partner_events_duplicates']} duplicates absorbed",
        ),
        (
            "messages",
            f"{summary['messages']} ({summary['messages_suppressed']} suppressed)",
        ),
        (
            "webhook attempts",
            f"{summary['webhook_attempts']} ({summary['webhook_attempts_failed']} failed)",
        ),
        ("CPU", f"{summary['cpu_seconds']} s ({summary['wall_seconds']} s wall)"),
        ("CPU per participant-day", fmt(summary["cpu_ms_per_participant_day"], " ms")),
        ("database rows per participant", fmt(summary["db_rows_per_participant"])),
    ]


def format_summary(summary: dict) -> str:
    rows = summary_rows(summary)
    width = max(len(label) for label, _ in rows)
    line = "-" * (width + 2) + "+" + "-" * 60
    out = [line]
    for label, value in rows:
        out.append(f" {label:<{width}} | {value}")
    out.append(line)
    return "\n".join(out)
