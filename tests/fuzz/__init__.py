"""The fuzz invariant: garbage in gives a protocol error, never any other exception.

targets.py holds the fuzz targets (pure functions of one byte string); the
hypothesis tests in test_fuzz_invariant.py run them in CI, and atheris_wire.py
runs the very same targets under atheris for long coverage-guided runs (see
README.md here).
"""
