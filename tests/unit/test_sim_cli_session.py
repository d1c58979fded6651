"""CliSession against a real IosXeDevice, no sockets: modes, enable, username forms, errors, save."""

from __future__ import annotations

import pytest

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_cli import MESSAGES, CliSession
from keyturn.sim.iosxe_device import BOTH_ERROR, TYPE0_WARNING, IosXeDevice


@pytest.fixture
def device() -> IosXeDevice:
    dev = IosXeDevice("r1")
    dev.set_user("admin", kind="secret", clear="admin-pw", privilege=15)
    dev.set_user("ops", kind="password", clear="ops-pw", privilege=1)
    dev.set_enable_secret("en4ble")
    dev.save()
    return dev


def run(session: CliSession, *lines: str) -> str:
    """Feed lines; return the transcript (prompt + input + output) as a terminal would show it."""
    out = []
    for line in lines:
        prompt = session.prompt
        reply = session.handle(line)
        out.append(f"{prompt}{line}\n{reply.text}")
    return "".join(out)


def test_priv15_lands_in_privileged_exec_and_others_in_user_exec(device: IosXeDevice) -> None:
    assert CliSession(device, privilege=15).prompt == "r1#"
    assert CliSession(device, privilege=1).prompt == "r1>"


def test_enable_flow(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=1)
    s.handle("enable")
    assert (s.prompt, s.input_mode) == ("Password: ", "secret")
    assert s.handle("wrong").text == "% Access denied\n\n"
    assert s.prompt == "r1>"
    s.handle("en")
    s.handle("en4ble")
    assert (s.prompt, s.privilege, s.input_mode) == ("r1#", 15, "line")
    assert run(s, "show privilege") == "r1#show privilege\nCurrent privilege level is 15\n"
    s.handle("disable")
    assert s.prompt == "r1>"


def test_enable_classic_style_asks_three_times(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=1, enable_style="classic")
    s.handle("enable")
    assert s.handle("wrong").text == ""
    assert (s.prompt, s.input_mode) == ("Password: ", "secret")
    s.handle("")
    assert s.handle("wrong").text == "% Bad secrets\n\n"
    assert s.prompt == "r1>"


def test_enable_without_enable_secret() -> None:
    dev = IosXeDevice("r2")
    s = CliSession(dev, privilege=1)
    assert s.handle("enable").text == "% No password set\n"
    assert s.prompt == "r2>"


def test_terminal_commands_work_in_user_exec(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=1)
    assert s.handle("terminal width 511").text == ""
    assert s.handle("terminal length 0").text == ""
    assert s.handle("terminal width 0").text == ""
    assert (s.length, s.width) == (0, 0)


def test_config_mode_and_rotation(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    assert s.handle("conf t").text == MESSAGES["config_banner"] + "\n"
    assert s.prompt == "r1(config)#"
    reply = s.handle("username admin algorithm-type scrypt secret N3w-Pa55word")
    assert (reply.text, reply.applied) == ("", True)
    s.handle("end")
    assert device.authenticate("admin", "N3w-Pa55word") is not None
    assert device.authenticate("admin", "admin-pw") is None
    assert device.user("admin").privilege == 15  # type: ignore[union-attr]
    assert run(s, "wr") == "r1#wr\nBuilding configuration...\n[OK]\n"
    device.reboot()
    assert device.authenticate("admin", "N3w-Pa55word") is not None


def test_unsaved_change_is_lost_on_reboot(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("configure terminal")
    s.handle("username ops password 0 changed-pw")
    s.handle("exit")
    device.reboot()
    assert device.authenticate("ops", "ops-pw") is not None


def test_password_type0_warning_and_both_error(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    assert s.handle("username ops password 0 other-pw").text == TYPE0_WARNING + "\n"
    reply = s.handle("username ops secret 0 other-pw")
    assert (reply.text, reply.applied) == (BOTH_ERROR + "\n", False)
    assert device.authenticate("ops", "other-pw") is not None


def test_stored_hash_and_invalid_hash(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    vector = "$9$cvWdfQlRRDKq/U$VFTPha5VHTCbSgSUAo.nPoh50ZiXOw1zmljEjXkaq1g"
    assert s.handle(f"username vec privilege 15 secret 9 {vector}").text == ""
    assert device.authenticate("vec", "123456") is not None
    assert s.handle("username vec secret 9 nothash").text.startswith(
        "ERROR: The secret you entered is not a valid encrypted secret.\n")


def test_password_length_limit(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    text = s.handle("username admin secret 0 " + "x" * 128).text
    assert text.startswith("% Invalid Password length")
    assert device.authenticate("admin", "admin-pw") is not None


def test_caret_is_aligned_under_the_token_after_the_prompt(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    assert run(s, "username bob privlege 15 secret x") == (
        "r1(config)#username bob privlege 15 secret x\n"
        "                        ^\n"
        "% Invalid input detected at '^' marker.\n\n"
    )
    assert run(s, "do show bogus") == (
        "r1(config)#do show bogus\n"
        "                   ^\n"
        "% Invalid input detected at '^' marker.\n\n"
    )
    assert s.prompt == "r1(config)#"


def test_ambiguous_and_incomplete(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    assert s.handle("c").text == '% Ambiguous command:  "c"\n\n'
    assert s.handle("show").text == "% Incomplete command.\n\n"


def test_no_username_asks_for_confirmation(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    s.handle("no username ops")
    assert s.input_mode == "char"
    assert s.prompt == MESSAGES["no_username_confirm"]
    s.handle("n")
    assert device.user("ops") is not None
    s.handle("no username ops")
    s.handle("\r")
    assert device.user("ops") is None
    assert s.prompt == "r1(config)#"


def test_copy_run_start_asks_for_the_destination(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    saves = device.save_count
    s.handle("copy running-config startup-config")
    assert s.prompt == "Destination filename [startup-config]? "
    assert s.handle("").text == "Building configuration...\n[OK]\n"
    assert device.save_count == saves + 1


def test_show_running_config_filters(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    lines = s.handle("show running-config | include ^username").text.splitlines()
    assert [ln.split()[1] for ln in lines] == ["admin", "ops"]
    assert s.handle("sh run | sec username ops").text.startswith("username ops privilege 1 password 0 ops-pw")
    full = s.handle("terminal length 0") and s.handle("show running-config").text
    assert full.startswith("Building configuration...\n\nCurrent configuration : ")
    assert "hostname r1\n" in full


def test_paging_with_more(device: IosXeDevice) -> None:
    for i in range(60):
        device.set_user(f"u{i:02d}", kind="password", clear="x")
    s = CliSession(device, privilege=15)
    first = s.handle("show running-config").text
    assert len(first.splitlines()) == 23
    assert (s.prompt, s.input_mode) == (MESSAGES["more"], "char")
    assert len(s.handle(" ").text.splitlines()) == 24   # a new line + the next 23
    assert s.input_mode == "char"
    assert s.handle("\r").text == "\nusername u37 privilege 1 password 0 x\n"
    assert s.handle("q").text == "\n"
    assert s.prompt == "r1#"


def test_show_version_matches_ansible_fact_regexes(device: IosXeDevice) -> None:
    import re

    text = CliSession(device, privilege=1).handle("show version").text
    assert re.search(r"Version (\S+)", text).group(1).rstrip(",") == "17.18.1"  # type: ignore[union-attr]
    assert re.search(r"^(.+) uptime", text, re.M).group(1) == "r1"  # type: ignore[union-attr]
    assert re.search(r'image file is "(.+)"', text).group(1) == "bootflash:packages.conf"  # type: ignore[union-attr]


def test_refuse_passwords_fault_refuses_without_change(device: IosXeDevice) -> None:
    faults = Faults(refuse_passwords=1)
    s = CliSession(device, privilege=15, faults=faults)
    s.handle("conf t")
    reply = s.handle("username admin secret 0 Refused-1")
    assert reply.text.startswith("% Password") and not reply.applied
    assert device.authenticate("admin", "admin-pw") is not None
    assert s.handle("username admin secret 0 Accepted-2").applied
    assert device.authenticate("admin", "Accepted-2") is not None


def test_enable_secret_rotation(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    assert s.handle("enable algorithm-type scrypt secret N3w-En4ble").applied
    assert device.check_enable("N3w-En4ble") and not device.check_enable("en4ble")


def test_reload_prompts_to_save_then_reboots(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    s.handle("username ops password 0 unsaved-pw")
    s.handle("end")
    s.handle("reload")
    assert s.prompt == MESSAGES["reload_save"]
    s.handle("no")
    assert s.prompt == MESSAGES["reload_confirm"]
    assert s.handle("\r").close
    assert device.authenticate("ops", "ops-pw") is not None


def test_long_hostname_is_cut_in_config_mode() -> None:
    dev = IosXeDevice("x", hostname="a-very-long-hostname-for-the-lab")
    s = CliSession(dev, privilege=15)
    assert s.prompt == "a-very-long-hostname-for-the-lab#"
    s.handle("conf t")
    assert s.prompt == "a-very-long-hostname(config)#"


def test_hostname_changes_the_prompt_and_stored_enable_secret(device: IosXeDevice) -> None:
    s = CliSession(device, privilege=15)
    s.handle("conf t")
    s.handle("hostname edge-01")
    assert s.prompt == "edge-01(config)#"
    vector = "$8$dsYGNam3K1SIJO$7nv/35M/qr6t.dVc7UY9zrJDWRVqncHub1PE9UlMQFs"
    assert s.handle(f"enable secret 8 {vector}").applied
    assert device.check_enable("cisco")
