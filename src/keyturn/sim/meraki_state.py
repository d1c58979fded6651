"""State and rules of the Meraki Dashboard API simulator: pure data, no HTTP.

What lives here (reference meraki.md §1, §3, §7.1): organisations, networks, Meraki auth users
(org-wide identities keyed by e-mail, authorised per network, password stored hashed and never
returned), wireless SSIDs and identity PSKs (their data; the operations on them are in
`sim/meraki_wireless.py`), admin identities with their API keys (at most
two each), per-org fault switches and per-org counters. The HTTP front-end (`sim/meraki.py`) maps
requests onto the methods below; every refusal is a `SimulatedApiError(status, *errors)` whose strings
are the simulator's own wording (the real ones are not documented, reference §8).

Lab/test helpers (`add_org`, `add_network`, `add_auth_user`, `add_api_key`, `verify_login`,
`set_password_out_of_band`) build a world and stand in for the RADIUS/Client-VPN login check keyturn
cannot make through the API.

Example:
    state = MerakiState(seed=1)
    org = state.add_org("Lab")
    net = state.add_network(org.id, "Branch 1")
    state.add_auth_user(net.id, "jane@example.com", "old-pass")
    key = state.add_api_key()
    state.verify_login(net.id, "jane@example.com", "old-pass")  # True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import string
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from keyturn.errors import SimulatedApiError, SimulatorError
from keyturn.sim.faults import Faults

T = TypeVar("T")
Json = dict[str, Any]

ACCOUNT_TYPES = ("802.1X", "Guest", "Client VPN")
WIRELESS_ACCOUNT_TYPES = ("802.1X", "Guest")
ORG_USER_CAP = 50_000
SSID_COUNT = 15
PSK_MIN, PSK_MAX = 8, 63
MAX_API_KEYS = 2
NEVER = "Never"
IPSK_AUTH_MODE = "ipsk-without-radius"
SSID_AUTH_MODES = (
    "open", "open-enhanced", "psk", "open-with-radius", "open-enhanced-with-radius", "open-with-nac",
    "8021x-meraki", "8021x-nac", "8021x-radius", "8021x-google", "8021x-entra", "8021x-localradius",
    "ipsk-with-radius", "ipsk-without-radius", "ipsk-with-nac", "ipsk-with-radius-easy-psk",
)
WPA_ENCRYPTION_MODES = (
    "WPA1 only", "WPA1 and WPA2", "WPA2 only", "WPA3 Transition Mode", "WPA3 only", "WPA3 192-bit Security",
)

# The simulator's own error strings (the real API's wording is unknown; reference §1.7, §8).
MESSAGES: dict[str, str] = {
    "org_not_found": "Organization not found",
    "network_not_found": "Network not found",
    "user_not_found": "Meraki auth user not found",
    "ssid_not_found": "SSID not found",
    "ipsk_not_found": "Identity PSK not found",
    "key_not_found": "API key not found",
    "email_taken": "Email has already been taken",
    "admin_immutable": "A Dashboard administrator's name and password can't be changed here",
    "password_empty": "'password' must not be empty",
    "password_policy": "Password does not meet the password policy of this organization",
    "user_cap": "Organizations are limited to 50000 Meraki authentication users",
    "psk_length": "A PSK SSID needs an 8 to 63 character key",
    "psk_mode": "'psk' is only valid if the authMode is 'psk'",
    "ipsk_mode": "Identity PSKs require the SSID authMode 'ipsk-without-radius'",
    "name_taken": "Name has already been taken",
    "passphrase_taken": "Passphrase has already been taken",
    "passphrase_length": "Passphrase must be 8 to 63 characters",
    "too_many_keys": "You can have at most two API keys; revoke one before generating another",
}

_PBKDF2_ITERATIONS = 1_000  # cheap on purpose: thousands of simulated users rotate in a benchmark
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))
_PASSPHRASE_ALPHABET = string.ascii_letters + string.digits


def _now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Meraki's timestamp shape: `2018-02-11T00:00:00.090210Z`."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def auth_user_id(email: str) -> str:
    """Meraki auth user ids are base64 of the e-mail (may end in `=`; clients percent-encode it or not)."""
    return base64.b64encode(email.encode()).decode()


def _email_from_id(user_id: str) -> str | None:
    try:
        return base64.b64decode(user_id.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ITERATIONS)


def _bad(*errors: str) -> SimulatedApiError:
    return SimulatedApiError(400, *errors)


def _not_found(key: str) -> SimulatedApiError:
    return SimulatedApiError(404, MESSAGES[key])


# ---------------------------------------------------------------------------------------------- model


@dataclass
class Authorization:
    authorized_zone: str
    expires_at: str
    authorized_by_name: str
    authorized_by_email: str
    ssid_number: int | None = None

    def expired(self, now: datetime) -> bool:
        if self.expires_at == NEVER:
            return False
        return datetime.fromisoformat(self.expires_at) <= now

    def to_json(self) -> Json:
        out: Json = {}
        if self.ssid_number is not None:
            out["ssidNumber"] = self.ssid_number
        out.update(authorizedZone=self.authorized_zone, expiresAt=self.expires_at,
                   authorizedByName=self.authorized_by_name, authorizedByEmail=self.authorized_by_email)
        return out


@dataclass
class AuthUser:
    """An org-wide Meraki auth identity; `authorizations` maps network id → that network's entries."""

    org_id: str
    email: str
    name: str
    account_type: str
    is_admin: bool
    created_at: datetime
    salt: bytes = b""
    password_hash: bytes = b""
    authorizations: dict[str, list[Authorization]] = field(default_factory=dict)
    password_changes: int = 0
    password_changed_at: datetime | None = None
    email_password_requests: int = 0  # writes that carried emailPasswordToUser=true (must stay 0)

    @property
    def id(self) -> str:
        return auth_user_id(self.email)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and hmac.compare_digest(
            self.password_hash, _hash_password(password, self.salt))

    def to_json(self, network_id: str) -> Json:
        return {
            "id": self.id, "email": self.email, "name": self.name, "createdAt": iso(self.created_at),
            "accountType": self.account_type, "isAdmin": self.is_admin,
            "authorizations": [a.to_json() for a in self.authorizations.get(network_id, [])],
        }


@dataclass
class IdentityPsk:
    id: str
    name: str
    group_policy_id: str
    passphrase: str
    expires_at: str | None = None
    email: str | None = None

    def to_json(self) -> Json:
        return {"name": self.name, "id": self.id, "groupPolicyId": self.group_policy_id,
                "passphrase": self.passphrase, "wifiPersonalNetworkId": None, "email": self.email,
                "expiresAt": self.expires_at}


@dataclass
class Ssid:
    number: int
    name: str
    enabled: bool = False
    auth_mode: str = "open"
    encryption_mode: str | None = None
    wpa_encryption_mode: str | None = None
    psk: str | None = None
    visible: bool = True
    identity_psks: dict[str, IdentityPsk] = field(default_factory=dict)
    psk_changes: int = 0

    def to_json(self) -> Json:
        out: Json = {"number": self.number, "name": self.name, "enabled": self.enabled,
                     "splashPage": "None", "ssidAdminAccessible": False, "authMode": self.auth_mode}
        if self.auth_mode == "psk":
            # The spec's GET schema omits psk, but the API returns it to authorised keys (reference §3.1).
            out.update(psk=self.psk, encryptionMode=self.encryption_mode,
                       wpaEncryptionMode=self.wpa_encryption_mode)
        out.update(ipAssignmentMode="NAT mode", minBitrate=11, bandSelection="Dual band operation",
                   perClientBandwidthLimitUp=0, perClientBandwidthLimitDown=0, visible=self.visible,
                   availableOnAllAps=True, availabilityTags=[], mandatoryDhcpEnabled=False)
        return out


@dataclass
class Network:
    id: str
    org_id: str
    name: str
    ssids: list[Ssid]
    product_types: list[str] = field(default_factory=lambda: ["appliance", "switch", "wireless"])
    time_zone: str = "America/Los_Angeles"

    def to_json(self, shard: int) -> Json:
        return {"id": self.id, "organizationId": self.org_id, "name": self.name,
                "productTypes": list(self.product_types), "timeZone": self.time_zone, "tags": [],
                "enrollmentString": None, "url": f"https://n{shard}.meraki.com/{self.name}/n/manage/usage/list",
                "notes": "", "isBoundToConfigTemplate": False}


@dataclass
class Org:
    id: str
    name: str
    shard: int
    network_ids: list[str] = field(default_factory=list)
    users: dict[str, AuthUser] = field(default_factory=dict)  # lower-case e-mail → user

    def to_json(self) -> Json:
        return {"id": self.id, "name": self.name,
                "url": f"https://n{self.shard}.meraki.com/o/{self.id}/manage/organization/overview",
                "api": {"enabled": True}, "licensing": {"model": "co-term"},
                "cloud": {"region": {"name": "North America", "host": {"name": "United States"}}},
                "management": {"details": []}}


@dataclass
class ApiKey:
    key: str
    created_at: datetime
    revoked: bool = False

    @property
    def suffix(self) -> str:
        return self.key[-4:]


@dataclass
class AdminIdentity:
    """A Dashboard admin behind API keys; `org_ids` None means full access to every org."""

    name: str
    email: str
    org_ids: frozenset[str] | None
    keys: list[ApiKey] = field(default_factory=list)

    def can_access(self, org_id: str) -> bool:
        return self.org_ids is None or org_id in self.org_ids

    @property
    def live_keys(self) -> list[ApiKey]:
        return [k for k in self.keys if not k.revoked]


@dataclass
class OrgStats:
    """Per-org counters the front-end bumps (tests and the benchmark read them)."""

    requests: int = 0
    rate_limited: int = 0        # 429 from the org token bucket
    storm_limited: int = 0       # 429 from the rate_limit_storm fault
    errors_injected: int = 0     # 5xx from error_rate
    timeouts: int = 0
    resets: int = 0
    refused_down: int = 0
    dropped_after_apply: int = 0
    redirected: int = 0
    refused_passwords: int = 0

    @property
    def throttled(self) -> int:
        """All 429s served for this org."""
        return self.rate_limited + self.storm_limited


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator saw it (an `apiRequests`-style log for tests)."""

    method: str
    path: str
    host: str
    status: int  # 0 = connection dropped / never answered
    org_id: str | None
    auth: str | None  # "bearer", "x-cisco-meraki-api-key" or None


# ---------------------------------------------------------------------------------------- pagination

FIRST_TOKEN = "0"
LAST_TOKEN = "zzzzzzzzzzzzzzzzzzzz"


def id_sort_key(item_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then the rest lexically (so "0" is below and LAST_TOKEN above all)."""
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_prev: bool
    has_next: bool


def paginate(items: Sequence[T], id_of: Callable[[T], str], *, per_page: int,
             starting_after: str | None = None, ending_before: str | None = None) -> Page:
    """One page of `items` (already in `id_sort_key` order) per Meraki's startingAfter/endingBefore."""
    keys = [id_sort_key(id_of(i)) for i in items]
    if ending_before is not None:
        stop = sum(1 for k in keys if k < id_sort_key(ending_before))
        start = max(0, stop - per_page)
    else:
        start = 0 if starting_after is None else sum(1 for k in keys if k <= id_sort_key(starting_after))
        stop = min(len(items), start + per_page)
    return Page(list(items[start:stop]), has_prev=start > 0, has_next=stop < len(items))


# ------------------------------------------------------------------------------------- body helpers


def _opt(body: Json, name: str, kind: type | tuple[type, ...], label: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int: refuse `true` where an integer is meant
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _bad(f"'{name}' must be {label}")
    return value


def _expires(value: Any) -> str:
    if value is None or value == NEVER:
        return NEVER
    if not isinstance(value, str):
        raise _bad("'expiresAt' must be a date-time string or 'Never'")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad("'expiresAt' must be a date-time string or 'Never'") from exc
    return iso(ts if ts.tzinfo else ts.replace(tzinfo=UTC))


# -------------------------------------------------------------------------------------------- state


class MerakiState:
    """The simulated Dashboard: see the module docstring. Not thread-safe (one event loop owns it)."""

    def __init__(self, *, seed: int | None = None, request_log_size: int = 10_000) -> None:
        self._rng = random.Random(seed)
        self._seed = seed
        self.orgs: dict[str, Org] = {}
        self.networks: dict[str, Network] = {}
        self.identities: list[AdminIdentity] = []
        self._keys: dict[str, tuple[AdminIdentity, ApiKey]] = {}
        self._ipsk_ids: set[str] = set()
        self.faults: dict[str, Faults] = {}
        self.stats: dict[str, OrgStats] = {}
        self.requests: deque[RequestRecord] = deque(maxlen=request_log_size)

    # ------------------------------------------------------------------ ids, faults, counters

    def _unique(self, make: Callable[[], str], taken: Callable[[str], bool]) -> str:
        while True:
            candidate = make()
            if not taken(candidate):
                return candidate

    def faults_for(self, org_id: str) -> Faults:
        """The fault switches of an org (created on first use, seeded from the state's seed)."""
        if org_id not in self.faults:
            seed = None if self._seed is None else int.from_bytes(
                hashlib.sha256(f"{self._seed}:{org_id}".encode()).digest()[:4], "big")
            self.faults[org_id] = Faults(seed=seed)
        return self.faults[org_id]

    def stats_for(self, org_id: str) -> OrgStats:
        return self.stats.setdefault(org_id, OrgStats())

    @property
    def emailed_passwords(self) -> int:
        """How many writes asked Meraki to e-mail a password (a rotation must never do that)."""
        return sum(u.email_password_requests for o in self.orgs.values() for u in o.users.values())

    # ------------------------------------------------------------------ building a world

    def add_org(self, name: str, org_id: str | None = None) -> Org:
        org_id = org_id or self._unique(lambda: str(self._rng.randint(100_000, 9_999_999)),
                                        lambda c: c in self.orgs)
        if org_id in self.orgs:
            raise SimulatorError(f"organization {org_id} already exists")
        org = Org(id=org_id, name=name, shard=self._rng.randint(100, 999))
        self.orgs[org_id] = org
        self.faults_for(org_id)
        return org

    def add_network(self, org_id: str, name: str, network_id: str | None = None) -> Network:
        org = self.orgs.get(org_id)
        if org is None:
            raise SimulatorError(f"no organization {org_id}")
        network_id = network_id or self._unique(
            lambda: f"N_{self._rng.randint(10**7, 10**18)}", lambda c: c in self.networks)
        if network_id in self.networks:
            raise SimulatorError(f"network {network_id} already exists")
        ssids = [Ssid(number=n, name=f"{name} - wireless WiFi" if n == 0 else f"Unconfigured SSID {n + 1}")
                 for n in range(SSID_COUNT)]
        net = Network(id=network_id, org_id=org_id, name=name, ssids=ssids)
        self.networks[network_id] = net
        org.network_ids.append(network_id)
        return net

    def add_auth_user(self, network_id: str, email: str, password: str, *, name: str | None = None,
                      account_type: str = "Client VPN", is_admin: bool = False) -> AuthUser:
        """Create (or authorise on one more network) an auth user with a known password."""
        net = self._network(network_id)
        if account_type not in ACCOUNT_TYPES:
            raise SimulatorError(f"account type must be one of {ACCOUNT_TYPES}")
        org = self.orgs[net.org_id]
        user = org.users.get(email.lower())
        if user is None:
            user = AuthUser(org_id=org.id, email=email, name=name or email.split("@")[0],
                            account_type=account_type, is_admin=is_admin, created_at=_now())
            org.users[email.lower()] = user
        zone, ssid = ("Client VPN", None) if account_type == "Client VPN" else (net.ssids[0].name, 0)
        user.authorizations[network_id] = [Authorization(zone, NEVER, "Lab Admin", "lab.admin@example.com",
                                                         ssid_number=ssid)]
        self._set_password(user, password, counted=False)
        return user

    def add_api_key(self, org_ids: Sequence[str] | None = None) -> str:
        """A new admin identity (full access, or only `org_ids`) holding one fresh 40-hex API key."""
        n = len(self.identities) + 1
        identity = AdminIdentity(name=f"Lab Admin {n}", email=f"lab.admin{n}@example.com",
                                 org_ids=None if org_ids is None else frozenset(org_ids))
        self.identities.append(identity)
        return self._mint_key(identity).key

    def configure_ssid(self, network_id: str, number: int, *, name: str | None = None,
                       auth_mode: str | None = None, psk: str | None = None, enabled: bool = True) -> Ssid:
        """Lab helper: set an SSID up directly (no refusal faults, no counters)."""
        ssid = self._ssid(network_id, number)
        if name is not None:
            ssid.name = name
        if auth_mode is not None:
            ssid.auth_mode = auth_mode
        ssid.enabled = enabled
        if ssid.auth_mode == "psk":
            ssid.psk = psk if psk is not None else ssid.psk
            ssid.encryption_mode = "wpa"
            ssid.wpa_encryption_mode = ssid.wpa_encryption_mode or "WPA2 only"
        return ssid

    def add_identity_psk(self, network_id: str, number: int, name: str, group_policy_id: str,
                         passphrase: str) -> IdentityPsk:
        """Lab helper: an identity PSK on an SSID (put in ``ipsk-without-radius`` mode if it is not)."""
        ssid = self._ssid(network_id, number)
        ssid.auth_mode = IPSK_AUTH_MODE
        ipsk = IdentityPsk(self.new_ipsk_id(), name, group_policy_id, passphrase)
        ssid.identity_psks[ipsk.id] = ipsk
        return ipsk

    def verify_login(self, network_id: str, email: str, password: str) -> bool:
        """The RADIUS/Client-VPN login stand-in: authorised (unexpired) on the network and right password."""
        net = self.networks.get(network_id)
        user = None if net is None else self.orgs[net.org_id].users.get(email.lower())
        if user is None:
            return False
        now = _now()
        if not any(not a.expired(now) for a in user.authorizations.get(network_id, [])):
            return False
        return user.check_password(password)

    def set_password_out_of_band(self, network_id: str, email: str, password: str) -> None:
        """Drift: the user reset the password at account.meraki.com; the API cannot see it."""
        net = self._network(network_id)
        user = self.orgs[net.org_id].users.get(email.lower())
        if user is None:
            raise SimulatorError(f"no auth user {email} in organization {net.org_id}")
        self._set_password(user, password, counted=False)

    def find_auth_user(self, network_id: str, email: str) -> AuthUser | None:
        net = self._network(network_id)
        return self.orgs[net.org_id].users.get(email.lower())

    # ------------------------------------------------------------------ lookups

    def _network(self, network_id: str) -> Network:
        net = self.networks.get(network_id)
        if net is None:
            raise SimulatorError(f"no network {network_id}")
        return net

    def org_of(self, kind: str, ident: str) -> str | None:
        """The org a path belongs to (`kind` "organizations" or "networks"), None if unknown."""
        if kind == "organizations":
            return ident if ident in self.orgs else None
        net = self.networks.get(ident)
        return net.org_id if net else None

    def authenticate(self, key: str) -> AdminIdentity | None:
        found = self._keys.get(key)
        if found is None or found[1].revoked:
            return None
        return found[0]

    def _visible_org(self, org_id: str, who: AdminIdentity) -> Org:
        org = self.orgs.get(org_id)
        # 404 rather than 403 for orgs the key cannot see (Meraki does not leak existence)
        if org is None or not who.can_access(org_id):
            raise _not_found("org_not_found")
        return org

    def _visible_network(self, network_id: str, who: AdminIdentity) -> Network:
        net = self.networks.get(network_id)
        if net is None or not who.can_access(net.org_id):
            raise _not_found("network_not_found")
        return net

    def _ssid(self, network_id: str, number: int) -> Ssid:
        net = self._network(network_id)
        if not 0 <= number < SSID_COUNT:
            raise _not_found("ssid_not_found")
        return net.ssids[number]

    # ------------------------------------------------------------------ organizations / networks

    def list_orgs(self, who: AdminIdentity) -> list[Org]:
        visible = (o for o in self.orgs.values() if who.can_access(o.id))
        return sorted(visible, key=lambda o: id_sort_key(o.id))

    def get_org(self, org_id: str, who: AdminIdentity) -> Json:
        return self._visible_org(org_id, who).to_json()

    def list_networks(self, org_id: str, who: AdminIdentity) -> list[Network]:
        org = self._visible_org(org_id, who)
        return sorted((self.networks[n] for n in org.network_ids), key=lambda n: id_sort_key(n.id))

    def network_json(self, net: Network) -> Json:
        return net.to_json(self.orgs[net.org_id].shard)

    def get_network(self, network_id: str, who: AdminIdentity) -> Json:
        return self.network_json(self._visible_network(network_id, who))

    # ------------------------------------------------------------------ merakiAuthUsers

    def _users_on(self, net: Network) -> list[AuthUser]:
        return [u for u in self.orgs[net.org_id].users.values() if net.id in u.authorizations]

    def _user_on(self, net: Network, user_id: str) -> AuthUser:
        email = _email_from_id(user_id)
        user = None if email is None else self.orgs[net.org_id].users.get(email.lower())
        if user is None or net.id not in user.authorizations:
            raise _not_found("user_not_found")
        return user

    def list_auth_users(self, network_id: str, who: AdminIdentity) -> list[Json]:
        net = self._visible_network(network_id, who)
        return [u.to_json(net.id) for u in self._users_on(net)]

    def get_auth_user(self, network_id: str, user_id: str, who: AdminIdentity) -> Json:
        net = self._visible_network(network_id, who)
        return self._user_on(net, user_id).to_json(net.id)

    def create_auth_user(self, network_id: str, body: Json, who: AdminIdentity) -> Json:
        net = self._visible_network(network_id, who)
        org = self.orgs[net.org_id]
        email = _opt(body, "email", str, "a string")
        if not email or "@" not in email:
            raise _bad("'email' is required and must be an e-mail address")
        if not isinstance(body.get("authorizations"), list):
            raise _bad("'authorizations' is required and must be an array")
        account_type = body.get("accountType", "802.1X")
        if account_type not in ACCOUNT_TYPES:
            raise _bad(f"'accountType' must be one of: {', '.join(ACCOUNT_TYPES)}")
        is_admin = bool(_opt(body, "isAdmin", bool, "a boolean"))
        name = _opt(body, "name", str, "a string")
        password = _opt(body, "password", str, "a string")
        if not is_admin and not name:
            raise _bad("'name' is required unless the user is a Dashboard administrator")
        if not is_admin and not password:
            raise _bad("'password' is required unless the user is a Dashboard administrator")
        auths = self._authorizations(net, account_type, body["authorizations"], who)
        user = org.users.get(email.lower())
        if user is not None and net.id in user.authorizations:
            raise _bad(MESSAGES["email_taken"])
        if user is None and len(org.users) >= ORG_USER_CAP:
            raise _bad(MESSAGES["user_cap"])
        if password is not None:
            self._refuse_if_faulted(org.id)
        if user is None:
            user = AuthUser(org_id=org.id, email=email, name=name or email, account_type=account_type,
                            is_admin=is_admin, created_at=_now())
            org.users[email.lower()] = user
        user.authorizations[net.id] = auths
        if password is not None:
            self._set_password(user, password, counted=False)
        if body.get("emailPasswordToUser") is True:
            user.email_password_requests += 1
        return user.to_json(net.id)

    def update_auth_user(self, network_id: str, user_id: str, body: Json, who: AdminIdentity) -> Json:
        net = self._visible_network(network_id, who)
        user = self._user_on(net, user_id)
        name = _opt(body, "name", str, "a string")
        password = _opt(body, "password", str, "a string")
        if user.is_admin and ("name" in body or "password" in body):
            raise _bad(MESSAGES["admin_immutable"])
        if "password" in body and not password:
            raise _bad(MESSAGES["password_empty"])
        auths = None
        if "authorizations" in body:
            if not isinstance(body["authorizations"], list):
                raise _bad("'authorizations' must be an array")
            auths = self._authorizations(net, user.account_type, body["authorizations"], who)
        if password is not None:
            self._refuse_if_faulted(net.org_id)
            # Meraki auth identities are org-wide: one password for every network (reference §1.6)
            self._set_password(user, password, counted=True)
        if name:
            user.name = name
        if auths is not None:
            user.authorizations[net.id] = auths
        if body.get("emailPasswordToUser") is True:
            user.email_password_requests += 1
        return user.to_json(net.id)

    def delete_auth_user(self, network_id: str, user_id: str, who: AdminIdentity, *, delete: bool) -> None:
        net = self._visible_network(network_id, who)
        user = self._user_on(net, user_id)
        del user.authorizations[net.id]
        # 802.1X users are always deleted; Guest/Client VPN only with delete=true and no other network
        if user.account_type == "802.1X" or (delete and not user.authorizations):
            del self.orgs[net.org_id].users[user.email.lower()]

    def _authorizations(self, net: Network, account_type: str, items: list[Any],
                        who: AdminIdentity) -> list[Authorization]:
        out = []
        for item in items:
            if not isinstance(item, dict):
                raise _bad("'authorizations' items must be objects")
            ssid_number = _opt(item, "ssidNumber", int, "an integer")
            if account_type in WIRELESS_ACCOUNT_TYPES:
                if ssid_number is None:
                    raise _bad("'ssidNumber' is required for wireless networks")
                if not 0 <= ssid_number < SSID_COUNT:
                    raise _bad(f"SSID {ssid_number} does not exist")
                zone = net.ssids[ssid_number].name
            else:
                ssid_number, zone = None, "Client VPN"
            out.append(Authorization(zone, _expires(item.get("expiresAt")), who.name, who.email,
                                     ssid_number=ssid_number))
        return out

    def _refuse_if_faulted(self, org_id: str) -> None:
        faults = self.faults_for(org_id)
        if faults.take("refuse_passwords"):
            self.stats_for(org_id).refused_passwords += 1
            raise _bad(faults.refuse_message or MESSAGES["password_policy"])

    def _set_password(self, user: AuthUser, password: str, *, counted: bool) -> None:
        user.salt = self._rng.randbytes(16)
        user.password_hash = _hash_password(password, user.salt)
        if counted:
            user.password_changes += 1
            user.password_changed_at = _now()

    # ------------------------------------------------------------------ for `sim/meraki_wireless.py`

    def visible_network(self, network_id: str, who: AdminIdentity) -> Network:
        """The network if `who` may see it, else 404 (the SSID and iPSK operations start here)."""
        return self._visible_network(network_id, who)

    def refuse_if_faulted(self, org_id: str) -> None:
        """400 when the org's `refuse_passwords` fault takes this secret (PSKs and iPSKs too)."""
        self._refuse_if_faulted(org_id)

    def random_passphrase(self) -> str:
        return "".join(self._rng.choice(_PASSPHRASE_ALPHABET) for _ in range(16))

    def new_ipsk_id(self) -> str:
        """A fresh identity PSK id: digits, like the spec's example ``"1284392014819"``."""
        ipsk_id = self._unique(lambda: str(self._rng.randint(10**12, 10**13 - 1)),
                               lambda c: c in self._ipsk_ids)
        self._ipsk_ids.add(ipsk_id)
        return ipsk_id

    # ------------------------------------------------------------------ administered identities / API keys

    def _mint_key(self, identity: AdminIdentity) -> ApiKey:
        key = self._unique(lambda: f"{self._rng.getrandbits(160):040x}", lambda c: c in self._keys)
        api_key = ApiKey(key=key, created_at=_now())
        identity.keys.append(api_key)
        self._keys[key] = (identity, api_key)
        return api_key

    def identity_me(self, who: AdminIdentity) -> Json:
        return {"name": who.name, "email": who.email, "lastUsedDashboardAt": iso(_now()),
                "authentication": {"mode": "email", "api": {"key": {"created": bool(who.live_keys)}},
                                   "twoFactor": {"enabled": False}, "saml": {"enabled": False}}}

    def list_api_keys(self, who: AdminIdentity) -> list[Json]:
        return [{"suffix": k.suffix, "createdAt": iso(k.created_at)} for k in who.live_keys]

    def generate_api_key(self, who: AdminIdentity) -> Json:
        if len(who.live_keys) >= MAX_API_KEYS:
            raise _bad(MESSAGES["too_many_keys"])
        return {"key": self._mint_key(who).key}

    def revoke_api_key(self, who: AdminIdentity, suffix: str) -> None:
        matching = [k for k in who.live_keys if k.suffix == suffix]
        if not matching:
            raise _not_found("key_not_found")
        for k in matching:  # two keys sharing a suffix: both go (real behaviour unknown, reference §3.3)
            k.revoked = True


def _passphrase_ok(value: str) -> bool:
    return PSK_MIN <= len(value) <= PSK_MAX and set(value) <= _PRINTABLE


# Public names of the request-body rules, for the wireless operations (`sim/meraki_wireless.py`).
bad_request = _bad
not_found = _not_found
optional_field = _opt
expires_value = _expires
passphrase_ok = _passphrase_ok
