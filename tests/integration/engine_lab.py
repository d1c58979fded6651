"""Load a simulator lab into a vault the way a user would: records, admin credentials, profiles.

Used by the engine integration tests. `Account` rows returned here know how to ask the lab's control
API whether the vault's current secret logs in (`current_logs_in`).
"""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.engine.profile import set_profile
from keyturn.secret import Secret
from keyturn.sim.client import ControlClient, LabState
from keyturn.sim.onboard import Titles, onboard_iosxe
from keyturn.vault import Field, Vault

TITLES = Titles(resource="{device}-{target}", admin="{device}-{target}-admin",
                user="{device}-{target}-{username}")


@dataclass(frozen=True)
class LabAccount:
    uid: str
    kind: str                 # target kind
    device: str | None        # IOS XE device name
    network: str | None       # Meraki network id
    login: str                # username / e-mail

    async def logs_in(self, ctl: ControlClient, password: str) -> bool:
        if self.device is not None:
            return await ctl.verify_iosxe(self.device, self.login, password)
        assert self.network is not None
        return await ctl.verify_meraki(self.network, self.login, password)

    async def current_logs_in(self, vault: Vault, ctl: ControlClient) -> bool:
        secret = vault.secret(self.uid)
        return secret is not None and await self.logs_in(ctl, secret.reveal())


def add_iosxe(vault: Vault, state: LabState, kind: str, *, devices: int | None = None,
              users: int | None = None, admin: bool = True) -> list[LabAccount]:
    """Records for the lab's IOS XE devices (`keyturn.sim.onboard`); users rotated with target `kind`
    (iosxe-restconf / -ssh; a device landing in `>` always gets iosxe-ssh). Titles `DEV-KIND`,
    `DEV-KIND-admin`, `DEV-KIND-USER`, so one vault may hold the same lab under two targets."""
    onboarded = onboard_iosxe(vault, state, target=kind, devices=devices, users=users, admin=admin,
                              titles=TITLES, allow_duplicate=True, actor="cli")
    return [LabAccount(a.uid, a.target, a.device, None, a.username) for a in onboarded]


def add_meraki(vault: Vault, state: LabState, *, networks: int | None = None,
               users: int | None = None, via_proxy: bool = False) -> list[LabAccount]:
    """Records for the lab's Meraki networks; the control API's /verify is the configured verifier.

    `via_proxy`: talk to https://api.meraki.com through the lab's proxy (so redirects to shard hosts
    such as n123.meraki.com resolve to the simulator), trusting the lab CA.
    """
    assert state.meraki is not None
    out = []
    key = vault.add(type="login", title="meraki-api-key", allow_duplicate=True,
                    fields=[Field("login", None, ["api"]),
                            Field("password", None, [Secret(state.meraki.api_key)])])
    nets = [(org, net) for org in state.meraki.orgs for net in org.networks][:networks]
    for org, net in nets:
        custom = [Field("text", "network_id", [net.id]), Field("text", "org_id", [org.id]),
                  Field("text", "verify_url", [f"{state.control_url}/verify"])]
        if via_proxy and state.meraki.proxy_url:
            custom += [Field("text", "base_url", ["https://api.meraki.com/api/v1"]),
                       Field("text", "proxy", [state.meraki.proxy_url]),
                       Field("text", "ca_bundle", [state.ca_cert])]
        else:
            custom.append(Field("text", "base_url", [state.meraki.base_url]))
        res = vault.add(type="pamMerakiNetwork", title=f"meraki-{net.id}", allow_duplicate=True,
                        custom=custom)
        for user in net.users[:users]:
            rec = vault.add(type="pamUser", title=f"{net.id}-{user.email}", allow_duplicate=True,
                            fields=[Field("login", None, [user.email]),
                                    Field("password", None, [Secret(user.password)])])
            set_profile(vault, rec.uid, target="meraki-auth-user", resource=res.uid, admin=key.uid)
            out.append(LabAccount(rec.uid, "meraki-auth-user", None, net.id, user.email))
    return out
