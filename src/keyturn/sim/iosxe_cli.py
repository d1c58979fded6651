"""IOS XE command-line interpreter for the SSH simulator, without any I/O.

`CliSession` is one vty session on an `IosXeDevice`: feed it a line with `handle(line)` and it returns
a `Reply` (text to print, whether to close, whether a credential change was applied); `prompt` and
`input_mode` then tell the transport what to print next and how to read the next input (`"line"`
echoed, `"secret"` not echoed, `"char"` one raw key such as the answer to `[confirm]`).

The command set is data: `_PATTERNS` lists every command per mode as a small pattern language
(`keyword`, `{a|b}=label`, `<lo-hi>=label`, `WORD=label`, `LINE=label`), compiled into a keyword
trie that gives IOS's unique-prefix abbreviations (`conf t`, `sh run`, `wr`), `% Ambiguous command`,
`% Incomplete command.` and the caret under the offending token for free. `_DECOYS` are real IOS
keywords we do not model; they exist so that abbreviations are exactly as ambiguous as on a device.
Every message text lives in `MESSAGES`.

Login security (reference §1-2): `show aaa local user lockout`, `clear aaa local user lockout|fail-attempts`
in privileged EXEC; in configuration mode `[no] aaa new-model`, `aaa authentication login default
METHODS`, `aaa authorization exec default local`, `aaa local authentication attempts max-fail N`,
`login block-for S attempts N within T`, `ip http authentication aaa|local` and `[no] service
password-encryption`. Other `aaa` commands need `aaa new-model` first, as on IOS. A configuration change
starts the device's RESTCONF re-sync window; `write memory` takes `write_delay` seconds.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal

from keyturn.sim.faults import Faults
from keyturn.sim.iosxe_aaa import AaaConfig, HttpAuthentication, parse_methods
from keyturn.sim.iosxe_device import TYPE0_WARNING, DeviceRefused, IosXeDevice

InputMode = Literal["line", "secret", "char"]

# ---- quirks as data -------------------------------------------------------------------------------

MESSAGES: dict[str, str] = {
    "invalid": "% Invalid input detected at '^' marker.",
    "incomplete": "% Incomplete command.",
    "ambiguous": '% Ambiguous command:  "{line}"',
    "config_banner": "Enter configuration commands, one per line.  End with CNTL/Z.",
    "configure_question": "Configuring from terminal, memory, or network [terminal]? ",
    "enable_prompt": "Password: ",
    "access_denied": "% Access denied",
    "bad_secrets": "% Bad secrets",
    "no_password_set": "% No password set",
    "building": "Building configuration...",
    "ok": "[OK]",
    "copy_destination": "Destination filename [startup-config]? ",
    "copy_error": "%Error opening {name} (Permission denied)",
    "no_username_confirm": (
        "This operation will remove all username related configurations with same name."
        "Do you want to continue? [confirm]"
    ),
    "reload_save": "System configuration has been modified. Save? [yes/no]: ",
    "reload_confirm": "Proceed with reload? [confirm]",
    "privilege": "Current privilege level is {level}",
    "bad_hash": (
        "ERROR: The secret you entered is not a valid encrypted secret.\n"
        "To enter an unencrypted secret, do not specify type {type} encryption.\n"
        "When you properly enter an unencrypted secret, it will be encrypted."
    ),
    "bad_type7": "Invalid encrypted password: {value}",
    "refused_policy": "% Password rejected by the configured password policy. Password configuration failed",
    "bad_regex": "% Invalid regular expression",
    "not_modelled": "% This command is not modelled by the keyturn simulator",
    "more": " --More-- ",
}

# IOS shows the hostname in full in EXEC mode but cuts it in configuration modes (netmiko relies on
# the first 16 characters being stable; the device cuts at 20).
CONFIG_PROMPT_HOSTNAME_MAX = 20
DEFAULT_TERMINAL_LENGTH = 24   # vty default; clients send `terminal length 0` before anything else
DEFAULT_TERMINAL_WIDTH = 80
ENABLE_ATTEMPTS = 3
# How a wrong enable secret is answered. "aaa" (`aaa new-model`, the usual production setup): one
# attempt, `% Access denied`, back to the `>` prompt. "classic" (no AAA): `Password:` is asked again
# silently, and the third failure prints `% Bad secrets`.
EnableStyle = Literal["aaa", "classic"]
IOS_VERSION = "17.18.1"

# A stored hash given with `secret 5|8|9 HASH` must look like one, or IOS refuses it.
_HASH_FORMATS: dict[str, re.Pattern[str]] = {
    "5": re.compile(r"\$1\$[./0-9A-Za-z]{1,8}\$[./0-9A-Za-z]{22}"),
    "8": re.compile(r"\$8\$[./0-9A-Za-z]{14}\$[./0-9A-Za-z]{43}"),
    "9": re.compile(r"\$9\$[./0-9A-Za-z]{14}\$[./0-9A-Za-z]{43}"),
}
_TYPE7_FORMAT = re.compile(r"[0-4][0-9](?:[0-9A-Fa-f]{2})+")
# `algorithm-type` picks the hash for a clear-text secret (md5-crypt is type 5, as on legacy fleets).
_ALGORITHM_TYPES = {"md5": "5", "sha256": "8", "scrypt": "9"}

_SECRET_TAILS = (
    "secret=kind {0|5|8|9}=type LINE=value",
    "secret=kind LINE=value",
    "algorithm-type {md5|sha256|scrypt}=algorithm secret=kind LINE=value",
)
_PASSWORD_TAILS = ("password=kind {0|6|7}=type LINE=value", "password=kind LINE=value")
_USER_OPTIONS = ("", "privilege <0-15>=privilege ", "view WORD=view ",
                 "privilege <0-15>=privilege view WORD=view ", "view WORD=view privilege <0-15>=privilege ")

_USER_EXEC: dict[str, str] = {
    "enable": "enable",
    "disable": "disable",
    "terminal length <0-512>=length": "terminal_length",
    "terminal width <0-512>=width": "terminal_width",
    "terminal monitor": "nothing",
    "terminal no monitor": "nothing",
    "show version": "show_version",
    "show privilege": "show_privilege",
    "exit": "exit",
    "logout": "exit",
    "quit": "exit",
}
_PRIV_EXEC: dict[str, str] = {
    **_USER_EXEC,
    "show running-config": "show_run",
    "write": "write_memory",
    "write memory": "write_memory",
    "write terminal": "show_run",
    "copy running-config startup-config": "copy_run_start",
    "configure": "configure_ask",
    "configure terminal": "configure",
    "reload": "reload",
    # Cisco "Login Password Retry Lockout": list and clear locked local users.
    "show aaa local user lockout": "show_lockout",
    "clear aaa local user lockout username WORD=name": "clear_lockout",
    "clear aaa local user lockout all": "clear_lockout",
    "clear aaa local user fail-attempts username WORD=name": "clear_fail_attempts",
    "clear aaa local user fail-attempts all": "clear_fail_attempts",
}
_CONFIG: dict[str, str] = {
    **{f"username WORD=name {opt}{tail}": "username"
       for opt in _USER_OPTIONS for tail in (*_SECRET_TAILS, *_PASSWORD_TAILS)},
    "no username WORD=name": "no_username",
    "enable secret {0|5|8|9}=type LINE=value": "enable_secret",
    "enable secret LINE=value": "enable_secret",
    "enable algorithm-type {md5|sha256|scrypt}=algorithm secret LINE=value": "enable_secret",
    "security passwords min-length <1-16>=length": "min_length",
    "hostname WORD=hostname": "hostname",
    # Login security lines (iosxe_aaa); the label names the command, `no_` forms remove the line.
    "aaa new-model=new_model": "aaa_line",
    "no aaa new-model=new_model": "no_aaa_line",
    "aaa authentication login=login default LINE=methods": "aaa_line",
    "no aaa authentication login=login default": "no_aaa_line",
    "aaa authorization exec=exec default local": "aaa_line",
    "no aaa authorization exec=exec default": "no_aaa_line",
    "aaa local authentication attempts max-fail=max_fail <1-65535>=count": "aaa_line",
    "no aaa local authentication attempts max-fail=max_fail": "no_aaa_line",
    "login block-for=block_for <1-65535>=seconds attempts <1-65535>=attempts within <1-65535>=within":
        "aaa_line",
    "no login block-for=block_for": "no_aaa_line",
    "ip http authentication=http {aaa|local}=method": "aaa_line",
    "no ip http authentication=http": "no_aaa_line",
    "service password-encryption": "password_encryption",
    "no service password-encryption": "no_password_encryption",
    "end": "end",
    "exit": "end",
    "do LINE=command": "do",
}
_DECOYS: dict[str, tuple[str, ...]] = {
    "exec": ("clear", "clock", "connect", "debug", "dir", "disconnect", "erase", "more", "ping", "send",
             "set", "setup", "ssh", "telnet", "traceroute", "undebug", "verify", "where"),
    "configure": ("confirm", "memory", "network", "overwrite-network", "replace", "revert"),
    "show": ("aaa", "clock", "interfaces", "inventory", "ip", "logging", "parser", "platform",
             "processes", "sessions", "ssh", "startup-config", "users"),
    "write": ("erase", "network"),
    "config": ("aaa", "access-list", "alias", "banner", "boot", "cdp", "clock", "crypto", "default",
               "interface", "ip", "ipv6", "line", "logging", "ntp", "router", "service",
               "snmp-server", "spanning-tree", "vlan"),
}
_FILTERS = ("append", "begin", "count", "exclude", "format", "include", "redirect", "section", "tee")
_PIPEABLE = frozenset({"show_run", "show_version", "show_privilege", "show_lockout"})


# ---- the command trie -----------------------------------------------------------------------------

@dataclass
class _Param:
    kind: Literal["int", "word", "line"]
    label: str
    low: int = 0
    high: int = 0

    def accepts(self, token: str) -> bool:
        if self.kind == "int":
            return token.isdigit() and self.low <= int(token) <= self.high
        return True


@dataclass
class _Node:
    keywords: dict[str, tuple[_Node, str | None]] = field(default_factory=dict)
    params: list[tuple[_Param, _Node]] = field(default_factory=list)
    action: str | None = None

    def child(self, keyword: str, label: str | None) -> _Node:
        if keyword not in self.keywords:
            self.keywords[keyword] = (_Node(), label)
        return self.keywords[keyword][0]

    def param_child(self, param: _Param) -> _Node:
        for existing, node in self.params:
            if existing == param:
                return node
        node = _Node()
        self.params.append((param, node))
        # IOS tries a number before a word and a word before the rest of the line.
        self.params.sort(key=lambda p: ("int", "word", "line").index(p[0].kind))
        return node


def _compile(patterns: dict[str, str], decoys: dict[str, tuple[str, ...]]) -> _Node:
    root = _Node()
    for pattern, action in patterns.items():
        nodes = [root]
        for spec in pattern.split():
            word, _, label = spec.partition("=")
            nxt: list[_Node] = []
            for node in nodes:
                if word.startswith("{"):
                    nxt += [node.child(choice, label) for choice in word[1:-1].split("|")]
                elif word.startswith("<"):
                    low, high = (int(x) for x in word[1:-1].split("-"))
                    nxt.append(node.param_child(_Param("int", label, low, high)))
                elif word in ("WORD", "LINE"):
                    nxt.append(node.param_child(_Param("word" if word == "WORD" else "line", label)))
                else:
                    nxt.append(node.child(word, label or None))
            nodes = nxt
        for node in nodes:
            node.action = action
    for where, words in decoys.items():
        parent = root if where in ("exec", "config") else root.keywords.get(where, (None,))[0]
        if parent is None:
            continue
        for word in words:
            if word not in parent.keywords:
                decoy = parent.child(word, None)
                decoy.action = "not_modelled"
                decoy.param_child(_Param("line", "_")).action = "not_modelled"
    return root


def _exec_decoys(extra: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    return {k: v + extra if k == "exec" else v for k, v in _DECOYS.items() if k != "config"}


COMMAND_TRIES: dict[str, _Node] = {
    "user": _compile(_USER_EXEC, {"exec": _DECOYS["exec"]}),
    "priv": _compile(_PRIV_EXEC, _exec_decoys(("copy",))),
    "config": _compile(_CONFIG, {"config": _DECOYS["config"]}),
}
_FILTER_TRIE = _compile({f: f for f in _FILTERS}, {})


@dataclass
class Parsed:
    action: str
    args: dict[str, str]
    pipe: tuple[str, str] | None = None     # (filter, regex)


@dataclass
class ParseError:
    kind: Literal["invalid", "incomplete", "ambiguous"]
    position: int = 0


def parse(trie: _Node, line: str) -> Parsed | ParseError | None:
    """Match `line` against a command trie; None for an empty line."""
    tokens = [(m.group(), m.start()) for m in re.finditer(r"\S+", line)]
    if not tokens:
        return None
    node, i = trie, 0
    args: dict[str, str] = {}
    while i < len(tokens):
        token, pos = tokens[i]
        if token == "|" and node.action in _PIPEABLE:
            return _parse_pipe(node.action, args, line, tokens[i + 1:])
        lowered = token.lower()
        if lowered in node.keywords:
            matches = [lowered]
        else:
            matches = [k for k in node.keywords if k.startswith(lowered)]
        if len(matches) == 1:
            node, label = node.keywords[matches[0]]
            if label:
                args[label] = matches[0]
            i += 1
            continue
        param = next(((p, n) for p, n in node.params if p.accepts(token)), None)
        if param is None:
            return ParseError("ambiguous" if matches else "invalid", pos)
        spec, node = param
        if spec.kind == "line":
            args[spec.label] = line[pos:]
            break
        args[spec.label] = token
        i += 1
    if node.action is None:
        return ParseError("incomplete")
    return Parsed(node.action, args)


def _parse_pipe(action: str, args: dict[str, str], line: str,
                rest: list[tuple[str, int]]) -> Parsed | ParseError:
    if not rest:
        return ParseError("incomplete")
    token, pos = rest[0]
    matches = [f for f in _FILTERS if f.startswith(token.lower())]
    if len(matches) != 1:
        return ParseError("ambiguous" if matches else "invalid", pos)
    name = matches[0]
    regex = line[pos + len(token):].lstrip(" ")
    if name not in ("include", "exclude", "begin", "section", "count"):
        return Parsed("not_modelled", {})
    if not regex and name != "count":
        return ParseError("incomplete")
    return Parsed(action, args, (name, regex))


def apply_filter(lines: list[str], name: str, regex: str) -> list[str]:
    """IOS output filters: `include`, `exclude`, `begin`, `section`, `count` (raises re.error)."""
    pattern = re.compile(regex) if regex else re.compile("")
    if name == "include":
        return [ln for ln in lines if pattern.search(ln)]
    if name == "exclude":
        return [ln for ln in lines if not pattern.search(ln)]
    if name == "begin":
        for i, ln in enumerate(lines):
            if pattern.search(ln):
                return lines[i:]
        return []
    if name == "count":
        return [f"Number of lines which match regexp = {sum(1 for ln in lines if pattern.search(ln))}"]
    out: list[str] = []
    keep = False
    for ln in lines:
        if not ln.startswith(" "):
            keep = bool(pattern.search(ln))
        if keep:
            out.append(ln)
    return out


# ---- the session ----------------------------------------------------------------------------------

class Mode(Enum):
    USER_EXEC = "user"
    PRIV_EXEC = "priv"
    CONFIG = "config"


@dataclass
class Reply:
    """What one input produced: `text` to print ("\\n" line ends), then the next prompt unless `close`."""

    text: str = ""
    close: bool = False
    applied: bool = False       # a password/secret change was applied to the running config
    delay: float = 0.0          # seconds the device takes before it prints `text` (write memory)


def _lines(*lines: str) -> str:
    return "".join(f"{ln}\n" for ln in lines)


_Handler = Callable[[str], Reply]


class CliSession:
    """One vty session: mode, privilege, terminal settings and any pending question (enable password,
    `[confirm]`, `--More--`). `faults` provides `refuse_passwords` (consumed here, per change)."""

    def __init__(self, device: IosXeDevice, *, privilege: int, faults: Faults | None = None,
                 booted_at: float | None = None, enable_style: EnableStyle = "aaa",
                 write_delay: float = 0.0) -> None:
        self.device = device
        self.write_delay = write_delay
        self.enable_style = enable_style
        self.faults = faults or Faults()
        self.mode = Mode.PRIV_EXEC if privilege >= 15 else Mode.USER_EXEC
        self.privilege = privilege
        self.length = DEFAULT_TERMINAL_LENGTH
        self.width = DEFAULT_TERMINAL_WIDTH
        self.booted_at = time.monotonic() if booted_at is None else booted_at
        self._pending: _Handler | None = None
        self._pending_prompt = ""
        self._pending_mode: InputMode = "line"
        self._enable_failures = 0
        self._more: list[str] = []

    # ---- what the transport shows ------------------------------------------------------------
    @property
    def prompt(self) -> str:
        if self._pending is not None:
            return self._pending_prompt
        host = self.device.hostname
        if self.mode is Mode.CONFIG:
            return f"{host[:CONFIG_PROMPT_HOSTNAME_MAX]}(config)#"
        return f"{host}#" if self.mode is Mode.PRIV_EXEC else f"{host}>"

    @property
    def input_mode(self) -> InputMode:
        return self._pending_mode if self._pending is not None else "line"

    # ---- input ----------------------------------------------------------------------------------
    def handle(self, line: str) -> Reply:
        """Process one input line (or one key in `char` mode)."""
        before = self.device.change_count
        if self._pending is not None:
            handler, self._pending = self._pending, None
            reply = handler(line)
        else:
            reply = self._command(line, self.prompt)
        if self.device.change_count != before:
            # The RESTCONF datastore re-syncs after a CLI change (cisco-ia.yang, reference §4).
            self.device.note_cli_change()
        return reply

    def interrupt(self) -> Reply:
        """Ctrl-Z / Ctrl-C: leave configuration mode, drop any pending question."""
        self._pending = None
        self._more = []
        if self.mode is Mode.CONFIG:
            self.mode = Mode.PRIV_EXEC
        return Reply()

    def _ask(self, prompt: str, mode: InputMode, handler: _Handler, text: str = "") -> Reply:
        self._pending, self._pending_prompt, self._pending_mode = handler, prompt, mode
        return Reply(text)

    def _command(self, line: str, prompt: str, *, offset: int = 0) -> Reply:
        parsed = parse(COMMAND_TRIES[self.mode.value], line)
        if parsed is None:
            return Reply()
        if isinstance(parsed, ParseError):
            if parsed.kind == "invalid":
                caret = " " * (len(prompt) + offset + parsed.position) + "^"
                return Reply(_lines(caret, MESSAGES["invalid"], ""))
            if parsed.kind == "ambiguous":
                return Reply(_lines(MESSAGES["ambiguous"].format(line=line.strip()), ""))
            return Reply(_lines(MESSAGES["incomplete"], ""))
        if parsed.action == "do":
            return self._do_do(parsed, prompt, line)
        handler: Callable[[Parsed], Reply] = getattr(self, f"_do_{parsed.action}")
        return handler(parsed)

    def _page(self, lines: list[str]) -> Reply:
        if self.length == 0 or len(lines) < self.length:
            return Reply(_lines(*lines))
        page, self._more = lines[: self.length - 1], lines[self.length - 1:]
        return self._ask(MESSAGES["more"], "char", self._more_key, _lines(*page))

    def _more_key(self, key: str) -> Reply:
        # Real IOS erases the --More-- marker with backspaces; a new line is close enough for clients.
        rest, self._more = self._more, []
        if key in ("q", "Q"):
            return Reply("\n")
        if key in ("\r", "\n"):
            first, rest = rest[:1], rest[1:]
            reply = Reply("\n" + _lines(*first))
            if rest:
                self._more = rest
                return self._ask(MESSAGES["more"], "char", self._more_key, reply.text)
            return reply
        page = self._page(rest)   # may leave the next --More-- pending
        return Reply("\n" + page.text)

    # ---- EXEC actions ---------------------------------------------------------------------------
    def _do_nothing(self, parsed: Parsed) -> Reply:
        return Reply()

    def _do_not_modelled(self, parsed: Parsed) -> Reply:
        return Reply(_lines(MESSAGES["not_modelled"], ""))

    def _do_exit(self, parsed: Parsed) -> Reply:
        return Reply(close=True)

    def _do_terminal_length(self, parsed: Parsed) -> Reply:
        self.length = int(parsed.args["length"])
        return Reply()

    def _do_terminal_width(self, parsed: Parsed) -> Reply:
        self.width = int(parsed.args["width"])
        return Reply()

    def _do_enable(self, parsed: Parsed) -> Reply:
        if self.mode is not Mode.USER_EXEC:
            return Reply()
        if not self.device.has_enable_secret():
            return Reply(_lines(MESSAGES["no_password_set"]))
        self._enable_failures = 0
        return self._ask(MESSAGES["enable_prompt"], "secret", self._enable_answer)

    def _enable_answer(self, password: str) -> Reply:
        if self.device.check_enable(password):
            self.mode, self.privilege = Mode.PRIV_EXEC, 15
            return Reply()
        if self.enable_style == "aaa":
            return Reply(_lines(MESSAGES["access_denied"], ""))
        self._enable_failures += 1
        if self._enable_failures >= ENABLE_ATTEMPTS:
            return Reply(_lines(MESSAGES["bad_secrets"], ""))
        return self._ask(MESSAGES["enable_prompt"], "secret", self._enable_answer)

    def _do_disable(self, parsed: Parsed) -> Reply:
        if self.mode is Mode.PRIV_EXEC:
            self.mode, self.privilege = Mode.USER_EXEC, 1
        return Reply()

    def _do_show_privilege(self, parsed: Parsed) -> Reply:
        return self._show([MESSAGES["privilege"].format(level=self.privilege)], parsed)

    def _do_show_version(self, parsed: Parsed) -> Reply:
        return self._show(self._version_lines(), parsed)

    def _do_show_run(self, parsed: Parsed) -> Reply:
        body = self.device.running_config_lines()
        size = sum(len(ln) + 1 for ln in body)
        return self._show([MESSAGES["building"], "", f"Current configuration : {size} bytes", *body],
                          parsed)

    def _do_show_lockout(self, parsed: Parsed) -> Reply:
        return self._show(self.device.guard.lockout_lines(), parsed)

    def _do_clear_lockout(self, parsed: Parsed) -> Reply:
        self.device.guard.clear_lockout(parsed.args.get("name"))
        return Reply()

    def _do_clear_fail_attempts(self, parsed: Parsed) -> Reply:
        self.device.guard.clear_fail_attempts(parsed.args.get("name"))
        return Reply()

    def _show(self, lines: list[str], parsed: Parsed) -> Reply:
        if parsed.pipe is not None:
            try:
                lines = apply_filter(lines, *parsed.pipe)
            except re.error:
                return Reply(_lines(MESSAGES["bad_regex"], ""))
        return self._page(lines)

    def _version_lines(self) -> list[str]:
        host = self.device.hostname
        minutes = int(time.monotonic() - self.booted_at) // 60
        serial = hashlib.sha256(self.device.name.encode()).hexdigest()[:11].upper()
        return [
            f"Cisco IOS XE Software, Version {IOS_VERSION}",
            "Cisco IOS Software [IOSXE], Virtual XE Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), "
            f"Version {IOS_VERSION}, RELEASE SOFTWARE (fc3)",
            "Technical Support: http://www.cisco.com/techsupport",
            "Copyright (c) 1986-2025 by Cisco Systems, Inc.",
            "",
            "ROM: IOS-XE ROMMON",
            "",
            f"{host} uptime is {minutes // 1440} days, {minutes // 60 % 24} hours, {minutes % 60} minutes",
            "System returned to ROM by reload",
            'System image file is "bootflash:packages.conf"',
            "Last reload reason: Reload Command",
            "",
            "cisco C8000V (VXE) processor (revision VXE) with 2028465K/3075K bytes of memory.",
            f"Processor board ID {serial}",
            "Router operating mode: Autonomous",
            "",
            "Configuration register is 0x2102",
            "",
        ]

    def _do_configure(self, parsed: Parsed) -> Reply:
        self.mode = Mode.CONFIG
        return Reply(_lines(MESSAGES["config_banner"]))

    def _do_configure_ask(self, parsed: Parsed) -> Reply:
        return self._ask(MESSAGES["configure_question"], "line", self._configure_answer)

    def _configure_answer(self, answer: str) -> Reply:
        if answer.strip() == "" or "terminal".startswith(answer.strip().lower()):
            return self._do_configure(Parsed("configure", {}))
        return self._do_not_modelled(Parsed("not_modelled", {}))

    def _do_write_memory(self, parsed: Parsed) -> Reply:
        # The save takes `write_delay` (1-3 s on real devices); RESTCONF writes are refused meanwhile.
        self.device.begin_save(self.write_delay)
        self.device.save()
        return Reply(_lines(MESSAGES["building"], MESSAGES["ok"]), delay=self.write_delay)

    def _do_copy_run_start(self, parsed: Parsed) -> Reply:
        return self._ask(MESSAGES["copy_destination"], "line", self._copy_answer)

    def _copy_answer(self, answer: str) -> Reply:
        name = answer.strip()
        if name not in ("", "startup-config"):
            return Reply(_lines(MESSAGES["copy_error"].format(name=name)))
        return self._do_write_memory(Parsed("write_memory", {}))

    def _do_reload(self, parsed: Parsed) -> Reply:
        if self.device.unsaved_changes():
            return self._ask(MESSAGES["reload_save"], "line", self._reload_save_answer)
        return self._ask(MESSAGES["reload_confirm"], "char", self._reload_confirm)

    def _reload_save_answer(self, answer: str) -> Reply:
        text = ""
        if answer.strip().lower() in ("y", "ye", "yes"):
            self.device.save()
            text = _lines(MESSAGES["building"], MESSAGES["ok"])
        return self._ask(MESSAGES["reload_confirm"], "char", self._reload_confirm, text)

    def _reload_confirm(self, key: str) -> Reply:
        if key in ("n", "N"):
            return Reply("\n")
        self.device.reboot()
        return Reply("\n", close=True)

    # ---- configuration actions ------------------------------------------------------------------
    def _do_end(self, parsed: Parsed) -> Reply:
        self.mode = Mode.PRIV_EXEC
        return Reply()

    def _do_do(self, parsed: Parsed, prompt: str, line: str) -> Reply:
        command = parsed.args["command"]
        self.mode = Mode.PRIV_EXEC
        try:
            return self._command(command, prompt, offset=len(line) - len(command))
        finally:
            self.mode = Mode.CONFIG

    def _refused_by_policy(self) -> Reply | None:
        if self.faults.take("refuse_passwords"):
            return Reply(_lines(MESSAGES["refused_policy"]))
        return None

    def _do_username(self, parsed: Parsed) -> Reply:
        args = parsed.args
        name, value = args["name"], args["value"]
        kind: Literal["password", "secret"] = "secret" if args["kind"] == "secret" else "password"
        encryption = args.get("type", "0")
        if "algorithm" in args:
            encryption = "0"
        stored: str | None = None
        if encryption in _HASH_FORMATS and kind == "secret":
            if not _HASH_FORMATS[encryption].fullmatch(value.strip()):
                return Reply(_lines(MESSAGES["bad_hash"].format(type=encryption)))
            stored = value.strip()
        elif kind == "password" and encryption == "7":
            if not _TYPE7_FORMAT.fullmatch(value.strip()):
                return Reply(_lines(MESSAGES["bad_type7"].format(value=value.strip())))
            stored = value.strip()
        elif kind == "password" and encryption == "6":
            # Type 6 needs the device's AES master key; the simulator has none.
            return self._do_not_modelled(parsed)
        refused = self._refused_by_policy()
        if refused is not None:
            return refused
        clear_encryption = _ALGORITHM_TYPES.get(args.get("algorithm", ""), "0")
        try:
            user = self.device.set_user(
                name, kind=kind, clear=None if stored else value,
                encryption=encryption if stored else clear_encryption, stored=stored,
                privilege=int(args["privilege"]) if "privilege" in args else None,
            )
        except DeviceRefused as exc:
            return Reply(_lines(exc.message))
        if "view" in args:
            user.view = args["view"]
        warning = TYPE0_WARNING if kind == "password" and encryption == "0" else None
        return Reply(_lines(warning) if warning else "", applied=True)

    def _do_no_username(self, parsed: Parsed) -> Reply:
        name = parsed.args["name"]

        def confirmed(key: str) -> Reply:
            if key not in ("n", "N"):
                self.device.delete_user(name)
            return Reply("\n")

        return self._ask(MESSAGES["no_username_confirm"], "char", confirmed)

    def _do_enable_secret(self, parsed: Parsed) -> Reply:
        args = parsed.args
        value = args["value"]
        encryption = "0" if "algorithm" in args else args.get("type", "0")
        if encryption in _HASH_FORMATS:
            if not _HASH_FORMATS[encryption].fullmatch(value.strip()):
                return Reply(_lines(MESSAGES["bad_hash"].format(type=encryption)))
            self.device.set_enable_secret_stored(value.strip(), encryption)
            return Reply(applied=True)
        refused = self._refused_by_policy()
        if refused is not None:
            return refused
        try:
            self.device.set_enable_secret(value, _ALGORITHM_TYPES.get(args.get("algorithm", ""), "9"))
        except DeviceRefused as exc:
            return Reply(_lines(exc.message))
        return Reply(applied=True)

    def _do_hostname(self, parsed: Parsed) -> Reply:
        self.device.set_hostname(parsed.args["hostname"])
        return Reply()

    def _do_aaa_line(self, parsed: Parsed, negate: bool = False) -> Reply:
        args, aaa = parsed.args, self.device.running.aaa
        if not aaa.new_model and ("login" in args or "exec" in args or "max_fail" in args):
            # Without `aaa new-model` IOS offers no other `aaa` command: the caret marks the keyword.
            caret = " " * (len(self.prompt) + (3 if negate else 0) + 4) + "^"
            return Reply(_lines(caret, MESSAGES["invalid"], ""))
        if "new_model" in args:
            # `no aaa new-model` takes the AAA lines with it; `login block-for` needs no AAA.
            changed = AaaConfig(block_for=aaa.block_for) if negate else replace(aaa, new_model=True)
        elif "login" in args:
            try:
                changed = replace(aaa, login=() if negate else parse_methods(args["methods"]))
            except ValueError:
                return self._do_not_modelled(parsed)
        elif "exec" in args:
            changed = replace(aaa, exec_authorization=not negate)
        elif "max_fail" in args:
            changed = replace(aaa, max_fail=None if negate else int(args["count"]))
        elif "block_for" in args:
            block = None if negate else (int(args["seconds"]), int(args["attempts"]), int(args["within"]))
            changed = replace(aaa, block_for=block)
        else:
            method: HttpAuthentication | None = None
            if not negate:
                method = "aaa" if args["method"] == "aaa" else "local"
            changed = replace(aaa, http_authentication=method)
        self.device.set_aaa(changed)
        return Reply()

    def _do_no_aaa_line(self, parsed: Parsed) -> Reply:
        return self._do_aaa_line(parsed, negate=True)

    def _do_password_encryption(self, parsed: Parsed) -> Reply:
        self.device.set_password_encryption(True)
        return Reply()

    def _do_no_password_encryption(self, parsed: Parsed) -> Reply:
        self.device.set_password_encryption(False)
        return Reply()

    def _do_min_length(self, parsed: Parsed) -> Reply:
        self.device.running.min_length = int(parsed.args["length"])
        return Reply()

