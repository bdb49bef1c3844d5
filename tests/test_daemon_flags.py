"""The daemon's command line (a flag table, not argparse: start-up time)."""

import pytest

from bootbus.daemon import parse_args


def test_values_flags_and_repeats() -> None:
    config = parse_args(["--address=unix:path=/x", "--runtime-dir", "/rt", "--print-address",
                         "--service-dir", "/a", "--service-dir=/b", "--config", "/c.conf"])
    assert config.address == "unix:path=/x"
    assert config.runtime_dir == "/rt"
    assert config.print_address
    assert config.service_dirs == ("/a", "/b")
    assert config.config_file == "/c.conf"
    assert config.restore_fd is None and not config.system_activation


def test_re_exec_flags_round_trip() -> None:
    config = parse_args(["--runtime-dir", "/rt", "--service-dir", "/a", "--config", "/c"])
    again = parse_args(config.exec_args() + ["--restore-fd", "7"])
    assert again.restore_fd == 7
    assert (again.runtime_dir, again.service_dirs, again.config_file) == ("/rt", ("/a",), "/c")


@pytest.mark.parametrize("argv", [["--bogus"], ["--address"], ["--print-address=yes"],
                                  ["--restore-fd", "x"]])
def test_bad_flags_exit_2_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "usage: bootbus" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--address" in out and "--restore-fd" not in out
