"""PII detectors: formats and checksums (with negatives), redaction, hashing, and the fake canary records."""

from __future__ import annotations

import pytest

from tasks.evaluate.privacy.lm import make_pii_canaries
from tasks.evaluate.privacy.pii import (
    CREDIT_CARD,
    EMAIL,
    IPV4,
    PHONE,
    SSN,
    PiiHit,
    find_pii,
    luhn_check_digit,
    luhn_valid,
    normalize,
    redact,
    secret_hash,
)


def types(text: str) -> list[str]:
    return [h.type for h in find_pii(text)]


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111 1111 1111 1111", True),  # the classic Visa test number
        ("5555555555554444", True),  # Mastercard test number
        ("378282246310005", True),  # Amex test number (15 digits)
        ("79927398713", True),  # the Luhn example of the literature
        ("4111 1111 1111 1112", False),
        ("79927398710", False),
        ("1234567812345678", False),
        ("7", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


def test_check_digit_completes_any_payload() -> None:
    for payload in ("400000123456789", "7992739871", "0"):
        assert luhn_valid(payload + luhn_check_digit(payload))
        assert not luhn_valid(payload + str((int(luhn_check_digit(payload)) + 1) % 10))


def test_card_numbers_need_luhn_length_and_one_kind_of_separator() -> None:
    assert types("pay with 4111 1111 1111 1111 today") == [CREDIT_CARD]
    assert types("pay with 4111-1111-1111-1111") == [CREDIT_CARD]
    assert types("pay with 4111111111111111.") == [CREDIT_CARD]
    assert types("pay with 4111 1111 1111 1112") == []  # fails Luhn
    assert types("order 4111 1111 1111 11111111 1") == []  # 22 digits: too long for a card
    assert types("mixed 4111 1111-1111 1111") == []  # two kinds of separator
    assert types("short 4111 1111 1") == []


def test_ssn_shapes_and_never_issued_groups() -> None:
    assert types("SSN 123-45-6789") == [SSN]
    assert types("SSN 123 45 6789") == [SSN]
    assert types("ITIN 912-78-1234") == [SSN]
    for bad in (
        "000-12-3456",
        "666-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45-67890",
        "123-456-789",
        "123-45 6789",
    ):
        assert SSN not in types(f"SSN {bad}"), bad


def test_phones_need_separators() -> None:
    for phone in ("(415) 555-0142", "415-555-0142", "415.555.0142", "+1 415 555 0142", "1-415-555-0142"):
        assert types(f"call {phone} now") == [PHONE], phone
    assert types("call 4155550142") == []  # a bare run of ten digits is not called a phone number
    assert types("call 555-0142") == []  # no area code


def test_emails_and_ipv4() -> None:
    assert types("mail Alice.Moreno+x@mail.example.org.") == [EMAIL]
    assert types("mail alice@localhost or @example.org or alice@") == []
    assert types("host 192.168.0.1 up") == [IPV4]
    assert types("version 1.2.3.4.5 and 256.1.1.1 and 10.0.0") == []


def test_hits_have_offsets_sorted_and_overlaps_keep_the_card() -> None:
    text = "card 4111 1111 1111 1111, ssn 123-45-6789, mail a@example.org"
    hits = find_pii(text)
    assert [h.type for h in hits] == [CREDIT_CARD, SSN, EMAIL]
    assert [text[h.start : h.end] for h in hits] == ["4111 1111 1111 1111", "123-45-6789", "a@example.org"]
    assert find_pii(text, types=[SSN]) == [PiiHit(SSN, 30, 41)]
    with pytest.raises(ValueError, match="unknown type 'iban'"):
        find_pii(text, types=["iban"])


def test_redaction_removes_values_and_other_long_digit_runs() -> None:
    text = "card 4111 1111 1111 1111, mail a@example.org, ref 9876543 at 12 o'clock, 4111 1111 1111 1112"
    out = redact(text)
    assert out == "card [CREDIT_CARD], mail [EMAIL], ref [DIGITS] at 12 o'clock, [DIGITS]"
    assert "4111" not in out and "a@example" not in out
    assert redact("write to goran.silva0@exrkecl now") == "write to [AT] now"  # a garbled address still names someone
    assert redact("mail a@example.org, b@x") == "mail [EMAIL], [AT]"


def test_hashes_match_normalized_values_only() -> None:
    assert secret_hash(CREDIT_CARD, "4111 1111 1111 1111") == secret_hash(CREDIT_CARD, "4111-1111-1111-1111")
    assert secret_hash(PHONE, "+1 (415) 555-0142") == secret_hash(PHONE, "415.555.0142")
    assert secret_hash(EMAIL, "A@Example.org") == secret_hash(EMAIL, "a@example.org")
    assert secret_hash(CREDIT_CARD, "4111 1111 1111 1111") != secret_hash(CREDIT_CARD, "5555 5555 5555 4444")
    assert secret_hash(SSN, "123-45-6789") != secret_hash(PHONE, "123-45-6789")  # the type is part of the hash
    keyed = secret_hash(SSN, "123-45-6789", key=b"org-key")
    assert keyed != secret_hash(SSN, "123-45-6789") and keyed.startswith("ssn:") and len(keyed) == 4 + 16
    assert "6789" not in secret_hash(SSN, "123-45-6789") and normalize(SSN, "123-45-6789") == "123456789"


def test_canaries_are_distinct_fake_and_fully_detected() -> None:
    records = make_pii_canaries(300, seed=5)
    assert records == make_pii_canaries(300, seed=5) and records != make_pii_canaries(300, seed=6)
    assert len(set(records)) == 300 and max(len(r) for r in records) < 110
    for record in records:
        hits = find_pii(record)
        assert sorted(h.type for h in hits) == sorted([SSN, EMAIL, PHONE, CREDIT_CARD]), record
        values = {h.type: record[h.start : h.end] for h in hits}
        assert values[SSN].startswith("9")  # never issued as an SSN
        assert values[EMAIL].endswith("@example.org")  # reserved domain
        assert "555-01" in values[PHONE]  # the range reserved for fiction
        assert normalize(CREDIT_CARD, values[CREDIT_CARD]).startswith("400000")  # test card range
    assert make_pii_canaries(0) == []
