from __future__ import annotations

import string

import pytest

from keyturn.errors import PolicyError
from keyturn.policy import KEEPER_SPECIALS, PasswordPolicy, effective, generate, parse_policy
from keyturn.secret import Secret
from keyturn.targets.base import SecretRules

IOS_RULES = SecretRules(min_length=1, max_length=127, forbidden="?")


def _counts(value: str, specials: str) -> tuple[int, int, int, int]:
    return (sum(c.isupper() for c in value), sum(c.islower() for c in value),
            sum(c.isdigit() for c in value), sum(c in specials for c in value))


# --- parsing -------------------------------------------------------------------------------------

def test_none_is_keeper_fallback() -> None:
    p = parse_policy(None)
    assert (p.length, p.min_upper, p.min_lower, p.min_digits, p.min_special) == (20, 1, 1, 1, 1)
    assert p.special_chars == KEEPER_SPECIALS


def test_keeper_complexity_object() -> None:
    p = parse_policy({"length": 32, "caps": 5, "lowercase": 4, "digits": 3, "special": 2,
                      "specialChars": "!#"})
    assert (p.length, p.min_upper, p.min_lower, p.min_digits, p.min_special) == (32, 5, 4, 3, 2)
    assert p.special_chars == "!#"
    assert parse_policy(p.to_keeper()) == p


def test_shorthand_and_json_text() -> None:
    assert parse_policy("32,5,5,5,5") == PasswordPolicy(32, 5, 5, 5, 5)
    assert parse_policy(" 24 , 1,2,3,4 ") == PasswordPolicy(24, 1, 2, 3, 4)
    assert parse_policy('{"length": 40, "caps": 2}') == PasswordPolicy(40, 2, 1, 1, 1)
    assert parse_policy("64") == PasswordPolicy(64)


@pytest.mark.parametrize("spec, fragment", [
    ("32,x,5,5,5", "not a whole number"),
    ("32,-1,5,5,5", "negative"),
    ("1,2,3,4,5,6", "expected LENGTH"),
    ({"length": 20, "colour": "red"}, "unknown key"),
    ({"length": True}, "whole number"),
    ('{"length": ', "not valid JSON"),
    ("[1, 2]", "not a whole number"),
    ({"specialChars": 5}, "expected a string"),
])
def test_malformed_policies_are_refused(spec: object, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(spec)  # type: ignore[arg-type]


# --- intersection with target rules ------------------------------------------------------------------

def test_effective_excludes_forbidden_and_space() -> None:
    p = effective(parse_policy(None), IOS_RULES)
    assert "?" in p.exclude and " " in p.exclude


@pytest.mark.parametrize("policy, rules, fragment", [
    (PasswordPolicy(10, 3, 3, 3, 3), IOS_RULES, "add up to 12, more than the length 10"),
    (PasswordPolicy(128), IOS_RULES, "above the target's maximum 127"),
    (PasswordPolicy(6), SecretRules(min_length=8, max_length=63), "below the target's minimum 8"),
    (PasswordPolicy(20, special_chars="?"), IOS_RULES, "every special character is excluded"),
    (PasswordPolicy(20, exclude=string.digits), IOS_RULES, "every digit character is excluded"),
    (PasswordPolicy(20, min_special=2, special_chars="!é"), SecretRules(allowed=string.ascii_letters + "é"),
     "every digit"),
    (PasswordPolicy(20, 0, 0, 5, 5, first_char_letter=True), IOS_RULES, "first character must be a letter"),
])
def test_impossible_policies_refused(policy: PasswordPolicy, rules: SecretRules, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        effective(policy, rules)


def test_policy_error_never_echoes_a_password() -> None:
    with pytest.raises(PolicyError) as err:
        effective(PasswordPolicy(10, 3, 3, 3, 3), IOS_RULES)
    assert "\n" not in str(err.value)


# --- generation (property loops) ---------------------------------------------------------------------

@pytest.mark.parametrize("spec", [None, "32,5,5,5,5", "127,1,1,1,1", "8,2,2,2,2", "16,0,8,8,0",
                                  {"length": 30, "caps": 1, "lowercase": 1, "digits": 1, "special": 10,
                                   "specialChars": "!@#?"}])
def test_generated_secrets_meet_every_constraint(spec: object) -> None:
    policy = effective(parse_policy(spec), IOS_RULES)  # type: ignore[arg-type]
    seen: set[str] = set()
    for _ in range(1000):
        secret = generate(policy)
        assert isinstance(secret, Secret)
        value = secret.reveal()
        seen.add(value)
        assert len(value) == policy.length
        assert all(0x21 <= ord(c) <= 0x7E for c in value)
        assert "?" not in value and value[0] != " " and value[-1] != " "
        upper, lower, digits, special = _counts(value, policy.special_chars)
        assert upper >= policy.min_upper and lower >= policy.min_lower
        assert digits >= policy.min_digits and special >= policy.min_special
        # Keeper semantics: a class with minimum 0 is not used at all.
        for count, minimum in ((upper, policy.min_upper), (lower, policy.min_lower),
                               (digits, policy.min_digits), (special, policy.min_special)):
            if minimum == 0:
                assert count == 0
        assert not set(value) & set(policy.exclude)
    assert len(seen) == 1000


def test_all_zero_minimums_means_one_of_each() -> None:
    policy = effective(parse_policy("12,0,0,0,0"), IOS_RULES)
    for _ in range(300):
        upper, lower, digits, special = _counts(generate(policy).reveal(), policy.special_chars)
        assert min(upper, lower, digits, special) >= 1


def test_first_char_letter() -> None:
    policy = effective(PasswordPolicy(16, 1, 1, 4, 4, first_char_letter=True), IOS_RULES)
    for _ in range(1000):
        value = generate(policy).reveal()
        assert value[0].isalpha()
        upper, lower, digits, special = _counts(value, policy.special_chars)
        assert upper >= 1 and lower >= 1 and digits >= 4 and special >= 4


def test_distribution_is_roughly_uniform() -> None:
    # Every position draws from the same pool: over 2,000 secrets of length 20 each character of a
    # 10-digit-only policy should appear close to 4,000 times (binomial sd ~ 60).
    policy = effective(PasswordPolicy(20, 0, 0, 1, 0), IOS_RULES)
    counts = dict.fromkeys(string.digits, 0)
    for _ in range(2000):
        for c in generate(policy).reveal():
            counts[c] += 1
    assert all(3600 < n < 4400 for n in counts.values()), counts


def test_generate_refuses_unsatisfiable_policy() -> None:
    with pytest.raises(PolicyError):
        generate(PasswordPolicy(3, 2, 2, 2, 2))
