"""The fuzz invariant in CI: random and mutated input into every target of targets.py.

Each target gets random bytes and mutations of valid seeds (frames real
clients send, SASL conversations, match rules). Longer, coverage-guided runs of
the same targets: tests/fuzz/README.md (atheris).
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import targets

# BOOTBUS_FUZZ_EXAMPLES=100000 makes this a long run (see README.md here)
EXAMPLES = int(os.environ.get("BOOTBUS_FUZZ_EXAMPLES", "200"))
CI = settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
INTERESTING = [0x00, 0x01, 0x02, 0x07, 0x08, 0x0f, 0x10, 0x1f, 0x20, 0x2f, 0x3a, 0x40, 0x61,
               0x6c, 0x42, 0x7f, 0x80, 0xfe, 0xff, ord("("), ord(")"), ord("{"), ord("}"),
               ord("a"), ord("v"), ord("s"), ord("'"), ord("\\"), ord(","), ord("\r"), ord("\n")]
SEEDS = targets.seed_inputs()


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations: set, flip, insert, delete, duplicate, cut."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "flip", "insert", "delete", "dup", "cut"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "insert" or not data:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "set":
            data[at] = draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "dup":
            data[at:at] = data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_seeds_are_accepted_by_their_target(name: str) -> None:
    for seed in SEEDS[name]:
        targets.TARGETS[name](seed)


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_random_bytes(name: str) -> None:
    @CI
    @given(st.binary(max_size=600))
    def run(data: bytes) -> None:
        targets.TARGETS[name](data)

    run()


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_mutated_seeds(name: str) -> None:
    @CI
    @given(mutated(SEEDS[name]))
    def run(data: bytes) -> None:
        targets.TARGETS[name](data)

    run()


@CI
@given(st.lists(st.sampled_from([s for seeds in SEEDS.values() for s in seeds]), max_size=4),
       st.binary(max_size=64))
def test_framer_on_several_frames_then_garbage(frames: list[bytes], tail: bytes) -> None:
    targets.framer(b"\x3f\x00\x01\x7f" + b"".join(frames) + tail)


def test_one_input_dispatches_on_the_first_byte() -> None:
    for index, name in enumerate(targets.TARGETS):
        for seed in SEEDS[name][:2]:
            targets.one_input(bytes((index,)) + seed)
    targets.one_input(b"")
