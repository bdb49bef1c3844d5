#!/usr/bin/env python3
"""Coverage-guided fuzzing of bootbus.wire and bootbus.bus with atheris (libFuzzer).

It runs the targets of tests/fuzz/targets.py -- the same functions the
hypothesis tests run in CI -- with the invariant that only the protocol error
escapes; any other exception or failed assertion is a crash libFuzzer saves.
See tests/fuzz/README.md for how to install atheris and run it for hours.

    atheris_wire.py --write-seeds DIR [--target NAME]   write the seed corpus and exit
    atheris_wire.py [--target NAME] [libFuzzer flags] [CORPUS_DIR ...]

Without --target, the first byte of each input picks the target.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]  # the repo (bootbus), tests/ (fuzz)

import atheris  # not a Debian package: pip install atheris

with atheris.instrument_imports(include=["bootbus", "fuzz"]):
    from fuzz import targets


def write_seeds(directory: Path, target: str | None) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    names = list(targets.TARGETS)
    for name, inputs in targets.seed_inputs().items():
        if target is not None and name != target:
            continue
        prefix = b"" if target is not None else bytes((names.index(name),))
        for index, data in enumerate(inputs):
            (directory / f"{name}-{index:03d}").write_bytes(prefix + data)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--target", choices=list(targets.TARGETS))
    parser.add_argument("--write-seeds", type=Path, metavar="DIR")
    parser.add_argument("--help", action="store_true")
    ours, libfuzzer_args = parser.parse_known_args()
    if ours.help:
        print(__doc__)
        return
    if ours.write_seeds is not None:
        count = write_seeds(ours.write_seeds, ours.target)
        print(f"wrote {count} seeds to {ours.write_seeds}")
        return
    one = targets.TARGETS[ours.target] if ours.target else targets.one_input
    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
