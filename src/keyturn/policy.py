"""Password policy: what the user asks for, intersected with what the target accepts, and the generator.

Three steps, at two different times:

* `parse_policy(spec)` when a rotation profile is set — accepts Keeper's complexity object
  (``{"length": 32, "caps": 5, "lowercase": 5, "digits": 5, "special": 5, "specialChars": "..."}``),
  its ``"32,5,5,5,5"`` shorthand (length, caps, lower, digits, special) or ``None`` (Keeper's fallback:
  length 20, one of each class);
* `effective(policy, rules)` also when the profile is set — intersects with the target's
  `SecretRules` and raises `PolicyError` with the reason when no secret can satisfy both, so an
  impossible policy is refused up front and never discovered at rotation time;
* `generate(policy)` at rotation time — uniformly random from `secrets`: the required characters of
  each class first, the rest from the union of the classes in use, then a `SystemRandom` shuffle.

Keeper semantics kept for parity: a class whose minimum is 0 is **not used at all** (``"20,0,5,5,5"``
has no capitals); when every minimum is 0, one of each class is required.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace

from keyturn.errors import PolicyError
from keyturn.secret import Secret
from keyturn.targets.base import SecretRules

KEEPER_SPECIALS = "!@#$%^?();',.=+[]<>{}-_/\\*&:\"`~|"
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII without space
KEEPER_DEFAULT_LENGTH = 20
MAX_LENGTH = 4096

# Keeper complexity keys → our field names.
_KEEPER_KEYS = {"length": "length", "caps": "min_upper", "lowercase": "min_lower", "digits": "min_digits",
                "special": "min_special"}
_EXTRA_KEYS = {"specialChars", "special_chars", "exclude", "firstCharLetter", "first_char_letter"}


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """A user's password policy. Minimums of 0 mean "class not used" (Keeper semantics)."""

    length: int = KEEPER_DEFAULT_LENGTH
    min_upper: int = 1
    min_lower: int = 1
    min_digits: int = 1
    min_special: int = 1
    special_chars: str = KEEPER_SPECIALS
    exclude: str = ""
    first_char_letter: bool = False

    def classes(self) -> list[tuple[int, str]]:
        """(minimum, alphabet) per class in use, alphabets already stripped of `exclude`."""
        raw = [(self.min_upper, string.ascii_uppercase), (self.min_lower, string.ascii_lowercase),
               (self.min_digits, string.digits), (self.min_special, self.special_chars)]
        if all(n == 0 for n, _ in raw):
            raw = [(1, chars) for _, chars in raw]
        # Space is never generated: IOS drops a leading one and no target wants one at either end.
        drop = set(self.exclude) | {" "}
        return [(n, "".join(c for c in chars if c not in drop)) for n, chars in raw if n > 0]

    def to_keeper(self) -> dict[str, object]:
        """The Keeper complexity object for this policy (what scripts and exports see)."""
        return {"length": self.length, "caps": self.min_upper, "lowercase": self.min_lower,
                "digits": self.min_digits, "special": self.min_special, "specialChars": self.special_chars}


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PolicyError(f"policy {name}: expected a whole number, got {type(value).__name__}")
    try:
        number = int(value)
    except ValueError:
        raise PolicyError(f"policy {name}: {value!r} is not a whole number") from None
    if number < 0:
        raise PolicyError(f"policy {name}: must not be negative (got {number})")
    return number


def parse_policy(spec: str | Mapping[str, object] | None) -> PasswordPolicy:
    """Parse a Keeper complexity object, its ``"L,U,l,D,S"`` shorthand, JSON text of either, or None.

    Raises `PolicyError` for malformed input (unknown keys, non-numbers, negative counts).
    """
    if spec is None:
        return PasswordPolicy()
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            return PasswordPolicy()
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PolicyError(f"policy is not valid JSON: {exc.msg} at column {exc.colno}") from None
            if not isinstance(loaded, dict):
                raise PolicyError("policy JSON must be an object")
            return parse_policy(loaded)
        parts = [p.strip() for p in text.split(",")]
        if not 1 <= len(parts) <= 5:
            raise PolicyError(f"policy shorthand {text!r}: expected LENGTH,CAPS,LOWER,DIGITS,SPECIAL")
        names = ["length", "caps", "lowercase", "digits", "special"]
        return parse_policy(dict(zip(names, parts, strict=False)))
    unknown = sorted(set(spec) - set(_KEEPER_KEYS) - _EXTRA_KEYS)
    if unknown:
        raise PolicyError(f"policy: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join([*_KEEPER_KEYS, 'specialChars', 'exclude', 'firstCharLetter'])}")
    values: dict[str, object] = {field: _as_int(key, spec[key]) for key, field in _KEEPER_KEYS.items()
                                 if key in spec}
    specials = spec.get("specialChars", spec.get("special_chars"))
    if specials is not None:
        if not isinstance(specials, str):
            raise PolicyError("policy specialChars: expected a string")
        values["special_chars"] = specials
    exclude = spec.get("exclude")
    if exclude is not None:
        if not isinstance(exclude, str):
            raise PolicyError("policy exclude: expected a string")
        values["exclude"] = exclude
    first = spec.get("firstCharLetter", spec.get("first_char_letter"))
    if first is not None:
        if not isinstance(first, bool):
            raise PolicyError("policy firstCharLetter: expected true or false")
        values["first_char_letter"] = first
    return replace(PasswordPolicy(), **values)  # type: ignore[arg-type]


def effective(policy: PasswordPolicy, rules: SecretRules) -> PasswordPolicy:
    """`policy` narrowed to what a target accepts; `PolicyError` (with the reason) if nothing fits.

    Characters the target forbids or does not allow (and space, which no target here wants at either
    end and the IOS CLI would strip) are added to `exclude`. Call this when a policy is set.
    """
    allowed = rules.allowed if rules.allowed is not None else PRINTABLE
    banned = (set(policy.exclude) | set(rules.forbidden) | {" "}
              | {c for c in PRINTABLE + policy.special_chars if c not in allowed})
    result = replace(policy, exclude="".join(sorted(banned)))
    if result.length > MAX_LENGTH:
        raise PolicyError(f"length {result.length} is larger than keyturn's limit {MAX_LENGTH}")
    if result.length < rules.min_length:
        raise PolicyError(f"length {result.length} is below the target's minimum {rules.min_length}")
    if result.length > rules.max_length:
        raise PolicyError(f"length {result.length} is above the target's maximum {rules.max_length}")
    classes = result.classes()
    for (minimum, alphabet), name in zip(classes, _class_names(result), strict=True):
        if not alphabet:
            raise PolicyError(f"at least {minimum} {name} required but every {name} character is excluded "
                              "by the policy or the target")
    required = sum(n for n, _ in classes)
    if required > result.length:
        raise PolicyError(f"the class minimums add up to {required}, more than the length {result.length}")
    if result.first_char_letter and not any(c.isalpha() for _, a in classes for c in a):
        raise PolicyError("first character must be a letter but no letters are in use")
    return result


def _class_names(policy: PasswordPolicy) -> list[str]:
    raw = [(policy.min_upper, "upper-case"), (policy.min_lower, "lower-case"), (policy.min_digits, "digit"),
           (policy.min_special, "special")]
    if all(n == 0 for n, _ in raw):
        return [name for _, name in raw]
    return [name for n, name in raw if n > 0]


_rng = secrets.SystemRandom()


def generate(policy: PasswordPolicy) -> Secret:
    """A fresh random secret meeting `policy` (pass the result of `effective`). Uniform per position."""
    classes = policy.classes()
    if any(not alphabet for _, alphabet in classes) or sum(n for n, _ in classes) > policy.length:
        raise PolicyError("policy cannot be satisfied; check it with effective() when it is set")
    chars = [secrets.choice(alphabet) for n, alphabet in classes for _ in range(n)]
    union = "".join(sorted({c for _, alphabet in classes for c in alphabet}))
    chars += [secrets.choice(union) for _ in range(policy.length - len(chars))]
    _rng.shuffle(chars)
    if policy.first_char_letter and not chars[0].isalpha():
        # Swap a random letter to the front: keeps every class count. A letter class is in use
        # (checked by `effective`), so at least one letter was placed.
        letters = [i for i, c in enumerate(chars) if c.isalpha()]
        if not letters:
            raise PolicyError("first character must be a letter but no letters are in use")
        i = secrets.choice(letters)
        chars[0], chars[i] = chars[i], chars[0]
    return Secret("".join(chars))
