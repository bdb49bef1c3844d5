"""Summarising samples into medians and ratios, and printing them.

Owns: the median of every numeric metric over a broker's samples, the ratio
to dbus-daemon, the plain-text table and the JSON document. It must never
run anything or decide pass/fail against targets.
"""

from __future__ import annotations

import statistics
from typing import Any

from workloads import Workload

REFERENCE = "dbus-daemon"
BUSY_WARN = 0.85  # below this the broker may not have been the bottleneck
CONTENDED = 0.10  # run-queue wait (fraction of the window) that explains low busy


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over successful samples; errors and skips are kept as text."""
    ok = [s for s in samples if "error" not in s and "skipped" not in s]
    out: dict[str, Any] = {"samples": samples}
    errors = [s["error"] for s in samples if "error" in s]
    if errors:
        out["errors"] = errors
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    if skipped:
        out["skipped"] = skipped[0]
    if ok:
        keys = [k for k, v in ok[0].items() if isinstance(v, (int, float))]
        out["median"] = {k: statistics.median(float(s[k]) for s in ok) for k in keys}
    return out


def add_ratios(workload: Workload, per_broker: dict[str, dict[str, Any]]) -> None:
    ref = per_broker.get(REFERENCE, {}).get("median")
    if workload.ratio is None or ref is None or not ref.get(workload.ratio):
        return
    for summary in per_broker.values():
        if "median" in summary:
            summary["ratio_to_dbus_daemon"] = summary["median"][workload.ratio] / ref[workload.ratio]


def _si(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _row(workload: Workload, broker: str, summary: dict[str, Any]) -> list[str]:
    if "not_applicable" in summary:
        return []
    if "median" not in summary:
        reason = summary.get("skipped") or "; ".join(summary.get("errors", ["no samples"]))
        label = "skipped" if "skipped" in summary else "FAILED"
        return [workload.title, broker, label, "", "", "", reason]
    m = summary["median"]
    key, unit = workload.headline
    result = f"{_si(m[key])} {unit}"
    cpu = f"{m[workload.cpu[0]]:.3g} {workload.cpu[1]}" if workload.cpu else ""
    busy = ""
    if "busy" in m:
        busy = f"{m['busy']:.0%}"
        if workload.check_busy and m["busy"] < BUSY_WARN:
            contended = max(m["waiting"], m["client_waiting"]) >= CONTENDED
            busy += " (c)" if contended else " (!)"
    ratio = summary.get("ratio_to_dbus_daemon")
    notes = workload.notes(m)
    if "errors" in summary:
        notes += f"; {len(summary['errors'])} failed sample(s)"
    return [workload.title, broker, result, cpu, busy,
            f"{ratio:.2f}x" if ratio is not None else "", notes]


def table(doc: dict[str, Any], workloads: list[Workload]) -> str:
    head = ["workload", "broker", "result", "broker CPU/op", "busy", "vs dbus-daemon", "notes"]
    rows: list[list[str]] = []
    for workload in workloads:
        per_broker = doc["workloads"][workload.name]["results"]
        for broker in doc["config"]["brokers"]:
            row = _row(workload, broker, per_broker[broker])
            if row:
                rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    right = {2, 3, 4, 5}

    def fmt(r: list[str]) -> str:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i])
                 for i in range(len(widths))]
        return "  ".join([*cells, r[-1]]).rstrip()

    machine, cfg = doc["machine"], doc["config"]
    measured = "; ".join(f"{b}: {doc['brokers'][b]['cpu_measured']}" for b in cfg["brokers"])
    lines = [
        (f"bootbus benchmark on {machine['nproc']} CPUs ({machine['cpu_model']}), "
         f"Linux {machine['kernel']}"),
        (f"{cfg['rounds']} round(s) x {cfg['seconds']} s per load workload, brokers "
         f"interleaved (A B C, C B A, ...), medians; {cfg['pinning']}"),
        f"broker CPU = utime+stime from /proc/PID/stat per operation; {measured}",
        (f"vs {REFERENCE} = ratio to {REFERENCE}'s broker CPU per op "
         "(startup: ms; memory: KiB per client); below 1 is better"),
    ]
    for name, reason in doc["skipped_brokers"].items():
        lines.append(f"not run: {name}: {reason}")
    lines += ["", fmt(head), fmt(["-" * w for w in widths] + ["-----"])]
    lines += [fmt(r) for r in rows]
    if any(r[4].endswith("(!)") for r in rows):
        lines.append(f"(!) broker below {BUSY_WARN:.0%} busy: the load generator may have "
                     "been the bottleneck")
    if any(r[4].endswith("(c)") for r in rows):
        lines.append(f"(c) broker below {BUSY_WARN:.0%} busy while it or the loadgen waited at "
                     f"least {CONTENDED:.0%} of the window runnable but not running (other load on this "
                     "machine, or slow wakeups of an idle virtual CPU)")
    return "\n".join(lines)
