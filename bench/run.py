#!/usr/bin/python3
"""bench/run.py: bootbus, dbus-daemon and dbus-broker side by side.

Starts each available broker on a private socket, runs every selected
workload against each of them in one run, interleaved (A B C, then C B A,
...), and prints a plain-text table (stdout) with throughput, the broker's
CPU time per operation and the ratio to dbus-daemon; the same numbers go to
bench/results/latest.json. Progress goes to stderr.

This file owns the command line and the order of runs. It must never leave
a broker or load generator running, and never assert targets: the table
reports, people decide. Usage:

    make bench                      # full run
    bench/run.py --quick            # seconds-long smoke run
    bench/run.py --brokers bootbus,dbus-daemon --workloads rtt,tput
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import brokers
import loadgen
import procfs
import report
from workloads import GROUPS, WORKLOADS, Config, Target, Workload

BENCH = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH / "results" / "latest.json"
FULL = Config(seconds=2.0, rounds=3, startups=5, clients=1000, broker_cpus=None,
              client_cpus=None)
QUICK = Config(seconds=0.3, rounds=1, startups=1, clients=200, broker_cpus=None,
               client_cpus=None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [b.name for b in brokers.all_brokers("/usr/bin/python3")]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"seconds-long smoke run ({QUICK.seconds} s windows, one round, "
                   f"{QUICK.clients} clients)")
    p.add_argument("--brokers", help=f"comma-separated subset of {','.join(names)} "
                   "(default: every one available here)")
    p.add_argument("--workloads", help=f"comma-separated subset of {','.join(GROUPS)}")
    p.add_argument("--rounds", type=int, help="samples per load workload and broker")
    p.add_argument("--seconds", type=float, help="measured window of each load run")
    p.add_argument("--clients", type=int, help="clients in the memory and re-exec workloads")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter running bootbus")
    p.add_argument("--no-pin", action="store_true", help="do not pin brokers and loadgen to CPUs")
    args = p.parse_args(argv)
    for flag, allowed in (("brokers", names), ("workloads", GROUPS)):
        value = getattr(args, flag)
        if value is not None:
            chosen = [v.strip() for v in value.split(",") if v.strip()]
            unknown = sorted(set(chosen) - set(allowed))
            if unknown or not chosen:
                p.error(f"--{flag}: unknown {', '.join(unknown) or 'empty list'}; "
                        f"choose from {', '.join(allowed)}")
            setattr(args, flag, chosen)
    return args


def pinning(no_pin: bool) -> tuple[set[int] | None, set[int] | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return None, None, "no CPU pinning"
    broker, client = {cpus[0]}, {cpus[1]}
    return broker, client, (f"broker on CPU {cpus[0]}, loadgen on CPU {cpus[1]} "
                            f"(rtt: both on CPU {cpus[0]})")


def raise_fd_limit() -> None:
    """1,000 clients need more than the usual 1,024 fds, here and in brokers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> dict[str, Any]:
    return {"nproc": len(os.sched_getaffinity(0)), "cpus_online": os.cpu_count(),
            "cpu_model": procfs.cpu_model(),
            "kernel": platform.release(), "python": platform.python_version()}


def sample(workload: Workload, target: Target) -> dict[str, Any]:
    try:
        return workload.run(target)
    except (brokers.BrokerError, loadgen.LoadgenError, RuntimeError, OSError,
            subprocess.SubprocessError) as exc:
        traceback.print_exc(file=sys.stderr)
        return {"error": f"{type(exc).__name__}: {exc}"}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def repetitions(workload: Workload, cfg: Config) -> int:
    return {"rounds": cfg.rounds, "startups": cfg.startups, "once": 1}[workload.repeat]


def run_workload(workload: Workload, targets: list[Target], cfg: Config) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    results: dict[str, dict[str, Any]] = {}
    active = []
    for t in targets:
        reason = workload.applies(t.name)
        if reason:
            results[t.name] = {"not_applicable": reason}
        else:
            active.append(t)
    order = []
    for rep in range(repetitions(workload, cfg)):
        round_order = active if rep % 2 == 0 else active[::-1]
        order.append([t.name for t in round_order])
        for target in round_order:
            progress(f"{workload.name} {rep + 1}/{repetitions(workload, cfg)} {target.name} ...")
            result = sample(workload, target)
            samples[target.name].append(result)
            progress(f"    {json.dumps(result)}")
            if "skipped" in result:
                progress(f"{workload.name} skipped for {target.name}: {result['skipped']}")
    for t in active:
        results[t.name] = report.summarise(samples[t.name])
    report.add_ratios(workload, results)
    units = {"headline": workload.headline, "cpu": workload.cpu, "ratio": workload.ratio}
    return {"title": workload.title, "units": units, "order": order, "results": results}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    broker_cpus, client_cpus, pin_note = pinning(args.no_pin)
    cfg = dataclasses.replace(base, seconds=args.seconds or base.seconds,
                              rounds=args.rounds or base.rounds,
                              clients=args.clients or base.clients,
                              broker_cpus=broker_cpus, client_cpus=client_cpus)
    selected = [w for w in WORKLOADS if args.workloads is None or w.group in args.workloads]

    chosen, skipped = [], {}
    for broker in brokers.all_brokers(args.python):
        if args.brokers is not None and broker.name not in args.brokers:
            continue
        reason = broker.unavailable()
        if reason is None:
            chosen.append(broker)
        elif args.brokers is not None:
            progress(f"cannot run {broker.name}: {reason}")
            return 2
        else:
            progress(f"skipping {broker.name}: {reason}")
            skipped[broker.name] = reason
    if not chosen:
        progress("no broker to benchmark")
        return 2

    try:
        loadgen.build()
    except loadgen.LoadgenError as exc:
        progress(str(exc))
        return 2
    raise_fd_limit()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # run the finally below
        signal.signal(signum, lambda sig, _frame: sys.exit(128 + sig))
    workroot = Path(tempfile.mkdtemp(prefix="bootbus-bench-"))
    targets = [Target(b, workroot, cfg) for b in chosen]
    doc: dict[str, Any] = {
        "schema": 1,
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": ["bench/run.py", *(sys.argv[1:] if argv is None else argv)],
        "machine": machine(),
        "config": {"quick": args.quick, "seconds": cfg.seconds, "rounds": cfg.rounds,
                   "startups": cfg.startups, "clients": cfg.clients, "pinning": pin_note,
                   "brokers": [b.name for b in chosen],
                   "workloads": [w.name for w in selected]},
        "brokers": {b.name: {"version": b.version(), "cpu_measured": b.cpu_note()}
                    for b in chosen},
        "skipped_brokers": skipped,
        "workloads": {},
    }
    finished = False
    try:
        for workload in selected:
            doc["workloads"][workload.name] = run_workload(workload, targets, cfg)
        finished = True
    finally:
        for target in targets:
            target.stop()
        if not finished:  # interrupted: nothing worth keeping
            shutil.rmtree(workroot, ignore_errors=True)
    failed = any("errors" in r for w in doc["workloads"].values() for r in w["results"].values())
    if failed:
        progress(f"some samples failed; broker logs kept in {workroot}")
    else:
        shutil.rmtree(workroot, ignore_errors=True)

    print(report.table(doc, selected))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    progress(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
