"""bootbusctl status in an emergency shell says why the boot stopped."""

from pathlib import Path

from bootbus.ctl import boot_stop_reasons


def test_rd_break_with_a_hook_is_named(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=/vmlinuz root=/dev/vda rd.break=pre-mount quiet\n")
    reasons = boot_stop_reasons(str(cmdline), str(tmp_path / "no-die"))
    assert any("rd.break=pre-mount" in r and "pre-mount hook" in r for r in reasons), reasons


def test_bare_rd_break_means_before_switch_root(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("rd.break\n")
    (reason,) = [r for r in boot_stop_reasons(str(cmdline), str(tmp_path / "x"))
                 if "rd.break" in r]
    assert "switch_root hook" in reason


def test_dracut_die_message_is_shown(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("quiet\n")
    die = tmp_path / ".die"
    die.write_text("Could not find root device /dev/vdb\n")
    reasons = boot_stop_reasons(str(cmdline), str(die))
    assert "dracut gave up: Could not find root device /dev/vdb" in reasons


def test_a_normal_boot_has_no_rd_reason(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=/dev/vda ro quiet\n")
    reasons = boot_stop_reasons(str(cmdline), str(tmp_path / "x"))
    assert not [r for r in reasons if "command line" in r or "dracut" in r]
