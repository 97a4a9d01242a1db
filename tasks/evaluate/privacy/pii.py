"""PII detectors for model output: what a leaked secret looks like, found without keeping the secret.

Each detector is a format regex plus the checks that cut false positives (Luhn for card numbers,
the never-issued SSN groups, octet ranges for IPv4). Callers get the type and the offsets of a hit
(``PiiHit``), a redacted copy of the text, and a truncated SHA-256 of the *normalized* value so a
completion can be matched against known canaries without the raw value ever being stored or logged.
A hash of a low-entropy value (an SSN) can be brute-forced; give ``secret_hash`` an organization
``key`` (HMAC) where the hashes leave the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

SSN, EMAIL, PHONE, CREDIT_CARD, IPV4 = "ssn", "email", "phone", "credit_card", "ipv4"
PII_TYPES: tuple[str, ...] = (SSN, EMAIL, PHONE, CREDIT_CARD, IPV4)
HASH_HEX_CHARS = 16  # 64 bits: enough to tell canaries apart, too short to be a lookup key for anything else
DIGITS_PLACEHOLDER, AT_PLACEHOLDER = "[DIGITS]", "[AT]"
LONG_DIGIT_RUN = re.compile(r"\d(?:[ .-]?\d){4,}")  # 5+ digits, however separated: redacted even when not PII
AT_TOKEN = re.compile(r"[^\s\[\]]*@[^\s\[\]]*")  # a broken e-mail address ("name@exa") still names someone

_PATTERNS: dict[str, re.Pattern[str]] = {
    # Card numbers: 13-19 digits, optionally in groups separated by one space or dash (Luhn checked below).
    CREDIT_CARD: re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
    # US SSN / ITIN shape, dashed or spaced; never-issued groups are rejected below.
    SSN: re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])"),
    # North American numbers with separators: (415) 555-0142, 415-555-0142, +1 415.555.0142.
    PHONE: re.compile(r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\d-])"),
    EMAIL: re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    IPV4: re.compile(
        r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"
    ),
}
# Overlapping hits keep the more specific type (a card number also matches looser digit patterns).
_PRIORITY = (CREDIT_CARD, SSN, PHONE, EMAIL, IPV4)


@dataclass(frozen=True)
class PiiHit:
    """One PII-shaped span of a text: its type and offsets, never its value."""

    type: str
    start: int
    end: int


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) checksum every payment card number carries; non-digits are ignored."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass Luhn (to build valid-looking fake card numbers)."""
    for digit in "0123456789":
        if luhn_valid(payload + digit):
            return digit
    raise AssertionError("unreachable: one of ten check digits always fits")


def _valid(kind: str, match: re.Match[str]) -> bool:
    value = match.group(0)
    if kind == CREDIT_CARD:
        digits = re.sub(r"\D", "", value)
        separators = {c for c in value if not c.isdigit()}
        return 13 <= len(digits) <= 19 and len(separators) <= 1 and luhn_valid(digits)
    if kind == SSN:
        area, group, serial = match.group(1), match.group(3), match.group(4)
        return area not in ("000", "666") and group != "00" and serial != "0000"
    return True


def find_pii(text: str, types: Iterable[str] = PII_TYPES) -> list[PiiHit]:
    """Every PII-shaped span of ``text`` by type, sorted by offset; overlaps keep the most specific type."""
    wanted = set(types)
    unknown = wanted - set(PII_TYPES)
    if unknown:
        raise ValueError(f"pii: unknown type {sorted(unknown)[0]!r} (known: {', '.join(PII_TYPES)})")
    taken: list[PiiHit] = []
    for kind in _PRIORITY:
        if kind not in wanted:
            continue
        for match in _PATTERNS[kind].finditer(text):
            start, end = match.span()
            if _valid(kind, match) and not any(start < h.end and h.start < end for h in taken):
                taken.append(PiiHit(kind, start, end))
    return sorted(taken, key=lambda h: (h.start, h.end))


def normalize(kind: str, value: str) -> str:
    """The canonical form a hash is taken of: digits only for numbers, lower case for e-mail addresses."""
    if kind in (CREDIT_CARD, SSN):
        return re.sub(r"\D", "", value)
    if kind == PHONE:
        digits = re.sub(r"\D", "", value)
        return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    if kind == EMAIL:
        return value.strip().lower()
    return value.strip()


def secret_hash(kind: str, value: str, key: bytes | None = None) -> str:
    """``<type>:<16 hex>``: truncated SHA-256 (HMAC-SHA256 with ``key``) of the normalized value."""
    message = f"{kind}:{normalize(kind, value)}".encode()
    digest = hmac.new(key, message, hashlib.sha256) if key else hashlib.sha256(message)
    return f"{kind}:{digest.hexdigest()[:HASH_HEX_CHARS]}"


def hit_hashes(text: str, hits: Iterable[PiiHit], key: bytes | None = None) -> list[str]:
    """The secret hash of each hit (in the order given)."""
    return [secret_hash(h.type, text[h.start : h.end], key) for h in hits]


def redact(text: str, hits: Iterable[PiiHit] | None = None) -> str:
    """``text`` with each PII span replaced by ``[TYPE]``, any other word holding ``@`` by ``[AT]`` and any
    other run of 5+ digits by ``[DIGITS]``.

    The last two rules are deliberately blunt: a near-miss (a card number one digit off, an e-mail
    address with a garbled domain) must not reach the evidence either. Names are not detected.
    """
    spans = sorted(find_pii(text) if hits is None else hits, key=lambda h: h.start)
    parts: list[str] = []
    cursor = 0
    for hit in spans:
        parts.append(_blunt(text[cursor : hit.start]))
        parts.append(f"[{hit.type.upper()}]")
        cursor = hit.end
    parts.append(_blunt(text[cursor:]))
    return "".join(parts)


def _blunt(segment: str) -> str:
    return LONG_DIGIT_RUN.sub(DIGITS_PLACEHOLDER, AT_TOKEN.sub(AT_PLACEHOLDER, segment))


__all__ = [
    "CREDIT_CARD",
    "EMAIL",
    "IPV4",
    "PHONE",
    "PII_TYPES",
    "SSN",
    "PiiHit",
    "find_pii",
    "hit_hashes",
    "luhn_check_digit",
    "luhn_valid",
    "normalize",
    "redact",
    "secret_hash",
]
