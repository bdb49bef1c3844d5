"""Test doubles shared by the step-log, journal and summary tests."""


class FakeClock:
    """The steplog Clock protocol, moved only by the test."""

    def __init__(self, monotonic: int = 5_000_000,
                 realtime: int = 1_700_000_000_000_000) -> None:
        self.realtime = realtime
        self.monotonic = monotonic

    def realtime_usec(self) -> int:
        return self.realtime

    def monotonic_usec(self) -> int:
        return self.monotonic

    def advance(self, usec: int) -> None:
        self.realtime += usec
        self.monotonic += usec
