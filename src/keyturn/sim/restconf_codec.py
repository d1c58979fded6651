"""RFC 7951 JSON for the simulated IOS XE `/native` subtree: device state out, typed edits in.

Output follows the real model (`Cisco-IOS-XE-native`, 17.18.1): the top-level member is
module-qualified, children are not, entries come in key order, `privilege` is a number and every
enumeration (`encryption`, enable `type`) a string. `dumps()` pretty-prints like the device (2-space
indent and a trailing newline).

Input is parsed strictly, as a strict RFC 7951 server does: a number where the model has an
enumeration or a string is `malformed-message`, an unknown member is `unknown element`
(`malformed-message`), a value outside its range or enumeration is `invalid-value`. Members that are
valid in the real model but not simulated are answered `operation-not-supported` rather than silently
dropped. The member tables below are the model; change them, not the parser, to widen it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from keyturn.sim.iosxe_aaa import AaaConfig
from keyturn.sim.iosxe_device import IosXeDevice, User
from keyturn.sim.restconf_errors import RestconfError

NATIVE_MODULE = "Cisco-IOS-XE-native"
NATIVE_NODE = f"{NATIVE_MODULE}:native"
USERNAME_NODE = f"{NATIVE_MODULE}:username"
AAA_NODE = f"{NATIVE_MODULE}:aaa"
LOGIN_NODE = f"{NATIVE_MODULE}:login"
# `/native/aaa`'s children come from the Cisco-IOS-XE-aaa augment, so RFC 7951 qualifies them.
AAA_MODULE = "Cisco-IOS-XE-aaa"
EMPTY: list[None] = [None]     # RFC 7951 encoding of a leaf of type `empty`
SAVE_CONFIG_OUTPUT = {"cisco-ia:output": {"result": "Save running-config successful"}}

CredentialKind = Literal["password", "secret"]

# /native/username/{password,secret}: container → (value leaf, allowed `encryption` enum values).
CREDENTIAL_ENCRYPTIONS: dict[CredentialKind, frozenset[str]] = {
    "password": frozenset({"0", "7", "6"}),
    "secret": frozenset({"0", "5", "8", "9"}),
}
ENABLE_SECRET_TYPES = frozenset({"0", "4", "5", "8", "9"})
NAME_LENGTH = (1, 64)
VIEW_LENGTH = (1, 30)
PRIVILEGE_RANGE = (0, 15)

# Valid in the 17.18.1 model, not simulated: answered 501 so a client learns it at once.
USER_UNMODELLED = frozenset({
    "one-time", "mac", "serial-number", "description", "wlan-profile-name", "no-password",
    "Cisco-IOS-XE-aaa:common-criteria-policy", "Cisco-IOS-XE-aaa:aaa",
})
ENABLE_UNMODELLED = frozenset({"password", "last-resort", "use-tacacs"})
NATIVE_MODELLED = frozenset({"hostname", "enable", "username"})


@dataclass(frozen=True)
class CredentialEdit:
    """A `password`/`secret` container as sent: `value` is clear text when encryption is "0"/absent."""

    kind: CredentialKind
    encryption: str | None
    value: str | None = field(repr=False)


@dataclass(frozen=True)
class UserEdit:
    """One `/native/username` entry as sent; None means the member was absent."""

    name: str
    privilege: int | None = None
    view: str | None = None
    password: CredentialEdit | None = None
    secret: CredentialEdit | None = None

    @property
    def credentials(self) -> tuple[CredentialEdit, ...]:
        return tuple(c for c in (self.password, self.secret) if c is not None)


@dataclass(frozen=True)
class NativeEdit:
    """The modelled members of a `/native` document; None means the member was absent."""

    hostname: str | None = None
    enable_secret: CredentialEdit | None = None
    users: tuple[UserEdit, ...] | None = None


# ---- output -------------------------------------------------------------------------------------

def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise like the device: 2-space indent, trailing newline."""
    return (json.dumps(doc, indent=2) + "\n").encode()


def user_json(user: User) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name, "privilege": user.privilege}
    if user.view is not None:
        entry["view"] = user.view
    cred = user.credential
    if cred is not None:
        entry[cred.kind] = {"encryption": cred.encryption, cred.kind: cred.stored}
    return entry


def username_document(users: Iterable[User]) -> dict[str, Any]:
    """`{"Cisco-IOS-XE-native:username": [...]}` in key order (the list is not ordered-by user)."""
    return {USERNAME_NODE: [user_json(u) for u in sorted(users, key=lambda u: u.name)]}


def _method(method: str) -> dict[str, Any]:
    # `group tacacs+` → {"group": "tacacs+"}; `local` → {"local": [null]} (auth-login-choice cases).
    if method.startswith("group "):
        return {"group": method.split(" ", 1)[1]}
    return {method: EMPTY}


def aaa_members(aaa: AaaConfig) -> dict[str, Any]:
    """The `/native/aaa` subtree (Cisco-IOS-XE-aaa `config-aaa-grouping`); {} when AAA is off."""
    if not aaa.new_model:
        return {}
    out: dict[str, Any] = {f"{AAA_MODULE}:new-model": EMPTY}
    if aaa.login:
        entry: dict[str, Any] = {"name": "default"}
        for i, method in enumerate(aaa.login[:4], start=1):    # the model has a1..a4
            entry[f"a{i}"] = _method(method)
        out[f"{AAA_MODULE}:authentication"] = {"login": [entry]}
    if aaa.max_fail is not None:
        out[f"{AAA_MODULE}:local"] = {"authentication": {"attempts": {"max-fail": aaa.max_fail}}}
    if aaa.exec_authorization:
        out[f"{AAA_MODULE}:authorization"] = {"exec": [{"name": "default", "a1": {"local": EMPTY}}]}
    return out


def login_members(aaa: AaaConfig) -> dict[str, Any]:
    """The `/native/login` subtree (`login block-for S attempts N within T`); {} when not configured."""
    if aaa.block_for is None:
        return {}
    seconds, attempts, within = aaa.block_for
    return {"block-config": {"block-for": seconds, "attempts": attempts, "within": within}}


def native_document(device: IosXeDevice, only: Container[str] | None = None) -> dict[str, Any]:
    """The `native` subtree; `only`: just those top-level members (a `fields` selection), so a read of
    `aaa` and `login` does not render — and hash on first read — every user's secret."""
    def wanted(member: str) -> bool:
        return only is None or member in only

    native: dict[str, Any] = {"hostname": device.hostname} if wanted("hostname") else {}
    enable = device.running.enable_secret
    if enable is not None and wanted("enable"):
        native["enable"] = {"secret": {"type": enable.encryption, "secret": enable.stored}}
    users = username_document(device.running.users.values())[USERNAME_NODE] if wanted("username") else []
    if users:
        native["username"] = users
    if device.running.password_encryption and wanted("service"):
        native["service"] = {"password-encryption": EMPTY}
    aaa = aaa_members(device.running.aaa) if wanted("aaa") else {}
    login = login_members(device.running.aaa) if wanted("login") else {}
    if aaa:
        native["aaa"] = aaa
    if login:
        native["login"] = login
    return {NATIVE_NODE: native}


# ---- the `fields` query parameter (RFC 8040 §4.8.3) ---------------------------------------------

FieldsTree = dict[str, "FieldsTree | None"]   # member → what to keep below it (None: all of it)
_FIELD_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*(?::[A-Za-z_][A-Za-z0-9_.-]*)?|[/;()]")


def parse_fields(text: str) -> FieldsTree:
    """``fields-expr = path "(" fields-expr ")" / path ";" fields-expr / path``, ``path =
    api-identifier ["/" path]`` (RFC 8040 §4.8.3) → a tree of member names (module prefixes dropped:
    the simulated subtree is one module). `invalid-value` for anything else, as for a bad query."""
    tokens = _FIELD_TOKEN.findall(text)
    bad = RestconfError("invalid-value", f"invalid value for query parameter fields: {text!r}")
    if "".join(tokens) != text or not text:
        raise bad
    pos = 0

    def expr(tree: FieldsTree, depth: int) -> None:
        nonlocal pos
        while True:
            node = tree
            while True:   # path: identifiers joined by "/"
                if pos >= len(tokens) or tokens[pos] in "/;()":
                    raise bad
                name = tokens[pos].split(":", 1)[-1]
                pos += 1
                if pos < len(tokens) and tokens[pos] == "/":
                    pos += 1
                    child = node.get(name, {})
                    node[name] = child = {} if child is None else child
                    node = child
                    continue
                break
            if pos < len(tokens) and tokens[pos] == "(":
                pos += 1
                sub = node.get(name) or {}
                expr(sub, depth + 1)
                node[name] = sub
                if pos >= len(tokens) or tokens[pos] != ")":
                    raise bad
                pos += 1
            elif name not in node:
                node[name] = None
            if pos < len(tokens) and tokens[pos] == ";":
                pos += 1
                continue
            if depth == 0 and pos < len(tokens):
                raise bad
            return

    tree: FieldsTree = {}
    expr(tree, 0)
    return tree


def select_fields(value: Any, tree: FieldsTree | None) -> Any:
    """`value` with only the members `tree` names (applied to every entry of a list). Members the
    data lacks are left out, as a server leaves out nodes that do not exist."""
    if tree is None:
        return value
    if isinstance(value, list):
        return [select_fields(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for member, v in value.items():
        name = member.split(":", 1)[-1]    # augmenting modules' members are prefixed (RFC 7951 §4)
        if name in tree:
            out[member] = select_fields(v, tree[name])
    return out


# ---- input --------------------------------------------------------------------------------------

class _Where:
    """A node position, rendered as RFC 8040 error-path and as the device's message path."""

    def __init__(self, steps: tuple[tuple[str, str | None], ...] = (("native", None),)) -> None:
        self.steps = steps

    def child(self, name: str, key: str | None = None) -> _Where:
        return _Where((*self.steps, (name, key)))

    @property
    def error_path(self) -> str:
        out = f"/{NATIVE_MODULE}:"
        for i, (name, key) in enumerate(self.steps):
            out += ("" if i == 0 else "/") + name + (f"[name='{key}']" if key is not None else "")
        return out

    @property
    def message_path(self) -> str:
        return "".join(
            f"/ios:{name}" + (f"[ios:name='{key}']" if key is not None else "") for name, key in self.steps
        )


def _malformed(where: _Where, what: str) -> RestconfError:
    return RestconfError("malformed-message", f"{what} in {where.message_path}", path=where.error_path)


def _invalid(where: _Where, what: str) -> RestconfError:
    return RestconfError("invalid-value", f"invalid value for: {where.message_path}: {what}",
                         path=where.error_path)


def _unknown(where: _Where, member: str) -> RestconfError:
    at = where.child(member)
    return RestconfError("malformed-message", f"unknown element: {member} in {at.message_path}",
                         path=at.error_path)


def _unmodelled(where: _Where, member: str) -> RestconfError:
    at = where.child(member)
    return RestconfError("operation-not-supported", f"{at.message_path} is not simulated", status=501,
                         path=at.error_path)


def _object(value: object, where: _Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(where, "expected a JSON object")
    return value


def _string(value: object, where: _Where, length: tuple[int, int] | None = None) -> str:
    if not isinstance(value, str):
        raise _malformed(where, "expected a JSON string")
    if length is not None and not length[0] <= len(value) <= length[1]:
        raise _invalid(where, f"length must be {length[0]}..{length[1]}")
    return value


def _uint8(value: object, where: _Where, bounds: tuple[int, int]) -> int:
    # bool is an int in Python but `true` is not a JSON number.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(where, "expected a JSON number")
    if not bounds[0] <= value <= bounds[1]:
        raise _invalid(where, f'"{value}" is out of range {bounds[0]}..{bounds[1]}')
    return value


def _enum(value: object, where: _Where, allowed: frozenset[str]) -> str:
    if not isinstance(value, str):
        raise _malformed(where, "expected enumeration value (a JSON string)")
    if value not in allowed:
        raise _invalid(where, f'"{value}" is not one of {sorted(allowed)}')
    return value


def top_member(doc: object, member: str) -> object:
    """The value of the single top-level `member` of a request body (RFC 8040: the target node)."""
    if not isinstance(doc, dict) or len(doc) != 1:
        raise RestconfError("malformed-message", f"expected one top-level member {member}")
    (name, value), = doc.items()
    if name != member:
        raise RestconfError("malformed-message", f"unknown element: {name}")
    return value


def parse_credential(kind: CredentialKind, value: object, where: _Where) -> CredentialEdit:
    at = where.child(kind)
    members = _object(value, at)
    encryption: str | None = None
    clear: str | None = None
    for name, item in members.items():
        if name == "encryption":
            encryption = _enum(item, at.child(name), CREDENTIAL_ENCRYPTIONS[kind])
        elif name == kind:
            clear = _string(item, at.child(name))
        else:
            raise _unknown(at, name)
    return CredentialEdit(kind=kind, encryption=encryption, value=clear)


def parse_user(value: object, where: _Where) -> UserEdit:
    members = _object(value, where.child("username"))
    if "name" not in members:
        raise RestconfError("malformed-message", "missing key leaf: name in /ios:native/ios:username",
                            path=where.child("username").error_path)
    name = _string(members["name"], where.child("username").child("name"), NAME_LENGTH)
    at = where.child("username", name)
    fields: dict[str, Any] = {}
    for member, item in members.items():
        if member == "name":
            continue
        if member == "privilege":
            fields["privilege"] = _uint8(item, at.child(member), PRIVILEGE_RANGE)
        elif member == "view":
            fields["view"] = _string(item, at.child(member), VIEW_LENGTH)
        elif member == "password":
            fields[member] = parse_credential("password", item, at)
        elif member == "secret":
            fields[member] = parse_credential("secret", item, at)
        elif member in USER_UNMODELLED:
            raise _unmodelled(at, member)
        else:
            raise _unknown(at, member)
    return UserEdit(name=name, **fields)


def parse_users(value: object, where: _Where | None = None) -> tuple[UserEdit, ...]:
    """A `username` list (RFC 7951: always an array, also for one entry); duplicate keys refused."""
    where = where or _Where()
    if not isinstance(value, list):
        raise _malformed(where.child("username"), "expected a JSON array")
    users = tuple(parse_user(item, where) for item in value)
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise _invalid(where.child("username"), "duplicate list entry")
    return users


def parse_enable(value: object, where: _Where) -> CredentialEdit | None:
    at = where.child("enable")
    secret: CredentialEdit | None = None
    for member, item in _object(value, at).items():
        if member == "secret":
            s_at = at.child("secret")
            encryption: str | None = None
            clear: str | None = None
            for name, leaf in _object(item, s_at).items():
                if name == "type":
                    encryption = _enum(leaf, s_at.child(name), ENABLE_SECRET_TYPES)
                elif name == "secret":
                    clear = _string(leaf, s_at.child(name))
                elif name == "level":
                    _uint8(leaf, s_at.child(name), (0, 255))
                else:
                    raise _unknown(s_at, name)
            secret = CredentialEdit(kind="secret", encryption=encryption, value=clear)
        elif member in ENABLE_UNMODELLED:
            raise _unmodelled(at, member)
        else:
            raise _unknown(at, member)
    return secret


def parse_native(value: object) -> NativeEdit:
    where = _Where()
    members = _object(value, where)
    hostname: str | None = None
    enable: CredentialEdit | None = None
    users: tuple[UserEdit, ...] | None = None
    for member, item in members.items():
        if member == "hostname":
            hostname = _string(item, where.child(member), (1, 253))
        elif member == "enable":
            enable = parse_enable(item, where)
        elif member == "username":
            users = parse_users(item, where)
        else:
            # Too many valid /native children to list; only these three are simulated.
            raise _unmodelled(where, member)
    return NativeEdit(hostname=hostname, enable_secret=enable, users=users)
