"""What `iosxe-ssh` discovery reads from `show running-config | include ^username`."""

from __future__ import annotations

from keyturn.targets.iosxe_ssh import LIST_USERS, parse_user_lines


def test_user_lines_give_name_privilege_and_credential_kind() -> None:
    output = "\r\n".join([
        LIST_USERS,
        "username admin privilege 15 secret 9 $9$nhEmQVczB7dqsO$X.HsgL6x1il0RxkOSSvyQYwucySCt7qFm4v7pqCxkKM",
        "username ops password 7 094F471A1A0A",
        "username guest privilege 1 nopassword",
        "username legacy privilege 5 view ops algorithm-type md5 secret 5 $1$5pZS$azfrPr6af3Fc7dLblQXVa0",
        "sw1#",
    ])
    found = {f.username: f for f in parse_user_lines(output)}
    assert sorted(found) == ["admin", "guest", "legacy", "ops"]
    assert (found["admin"].privilege, found["admin"].kind, found["admin"].type) == (15, "secret", "9")
    assert (found["ops"].privilege, found["ops"].kind, found["ops"].type) == (1, "password", "7")
    assert (found["legacy"].privilege, found["legacy"].type) == (5, "5")
    assert not found["guest"].rotatable and "nopassword" in found["guest"].note
    assert all(f.rotatable for name, f in found.items() if name != "guest")
