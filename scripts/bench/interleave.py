#!/usr/bin/env python3
"""Interleaved start-to-exit timing of several commands.

Usage: interleave.py [--runs N] [--json FILE] [--na NAME=REASON ...]
                      [--sub TEXT=SHORT ...] NAME=COMMAND ...

Each COMMAND is split with shlex (no shell is involved, so the shell's own start
is not measured). Every command is run once untimed as a warm-up; a command
whose warm-up fails is reported as n/a with the tail of its stderr and left out
of the rounds. Then N rounds run each remaining command once, in the order
given, timing fork+exec to exit with a monotonic nanosecond clock. A command
that fails during the rounds is dropped and reported as n/a too, as is one
named by --na (e.g. when its setup already failed). --sub shortens the
commands as printed in the table (e.g. a long scratch path to $S).

Prints a markdown table (median, min, max in milliseconds) and, when the rows
exist, the ratios burrow/podman and burrow/bwrap.
"""

import json
import shlex
import statistics
import subprocess
import sys
import time


def tail(data: bytes, lines: int = 3) -> str:
    text = data.decode("utf-8", "replace").strip().splitlines()
    return " / ".join(l.strip() for l in text[-lines:]) or "(no output)"


def run_once(argv):
    t0 = time.perf_counter_ns()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    except OSError as e:
        return time.perf_counter_ns() - t0, 127, str(e).encode()
    return time.perf_counter_ns() - t0, p.returncode, p.stderr


def main(args):
    runs, json_out, specs, preset, subs = 20, None, [], {}, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--runs":
            runs = int(args[i + 1]); i += 2; continue
        if a == "--json":
            json_out = args[i + 1]; i += 2; continue
        if a == "--sub":
            old, _, new = args[i + 1].partition("=")
            subs.append((old, new)); i += 2; continue
        if a == "--na":
            name, _, why = args[i + 1].partition("=")
            preset[name] = why or "unavailable"; i += 2; continue
        name, sep, cmd = a.partition("=")
        if not sep or not name or not cmd:
            sys.exit(f"interleave.py: expected NAME=COMMAND, got {a!r}")
        specs.append((name, cmd, shlex.split(cmd)))
        i += 1
    if not 1 <= runs <= 1000:
        sys.exit("interleave.py: --runs must be 1..1000")

    samples = {name: [] for name, _, _ in specs}
    errors = dict(preset)
    for name, _, argv in specs:
        if name in errors:
            print(f"# {name}: n/a ({errors[name]})", file=sys.stderr)
            continue
        _, rc, err = run_once(argv)
        if rc != 0:
            errors[name] = f"warm-up exited {rc}: {tail(err)}"
            print(f"# {name}: n/a ({errors[name]})", file=sys.stderr)

    for r in range(runs):
        for name, _, argv in specs:
            if name in errors:
                continue
            ns, rc, err = run_once(argv)
            if rc != 0:
                errors[name] = f"run {r + 1} exited {rc}: {tail(err)}"
                print(f"# {name}: n/a ({errors[name]})", file=sys.stderr)
                continue
            samples[name].append(ns)
        print(f"# round {r + 1}/{runs} done", file=sys.stderr)

    def short(cmd):
        for old, new in subs:
            cmd = cmd.replace(old, new)
        return cmd

    med = {}
    print(f"| runner | command | median (ms) | min (ms) | max (ms) | runs |")
    print(f"|---|---|---:|---:|---:|---:|")
    for name, cmd, _ in specs:
        if name in errors:
            print(f"| {name} | `{short(cmd)}` | n/a | | | 0 |")
            continue
        s = samples[name]
        med[name] = statistics.median(s)
        print(f"| {name} | `{short(cmd)}` | {med[name] / 1e6:.1f} | {min(s) / 1e6:.1f} | "
              f"{max(s) / 1e6:.1f} | {len(s)} |")
    print()
    for a, b in (("burrow", "podman"), ("burrow", "bwrap"), ("podman", "bwrap")):
        if a in med and b in med:
            print(f"- {a}/{b}: {med[a] / med[b]:.3f}x")
        elif a in [s[0] for s in specs] and b in [s[0] for s in specs]:
            print(f"- {a}/{b}: n/a")
    for name, msg in errors.items():
        print(f"- {name}: n/a: {msg}")

    if json_out:
        with open(json_out, "w") as f:
            json.dump({"runs": runs,
                       "commands": {n: c for n, c, _ in specs},
                       "samples_ns": samples,
                       "median_ns": med,
                       "errors": errors}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
