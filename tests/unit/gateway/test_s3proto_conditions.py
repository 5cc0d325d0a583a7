"""Range parsing and conditional requests (atoll.gateway.s3proto): RFC 9110 / 7232
cases and S3's documented behaviour."""

from __future__ import annotations

import pytest

from atoll.gateway import errors
from atoll.gateway.s3proto import (
    Condition,
    content_range,
    evaluate_read_conditions,
    evaluate_write_conditions,
    format_http_date,
    parse_http_date,
    parse_range,
)

# -- Range -------------------------------------------------------------------------------

SIZE = 10_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("bytes=0-499", (0, 499)),  # RFC 9110 §14.1.2 examples (size 10000)
        ("bytes=500-999", (500, 999)),
        ("bytes=-500", (9500, 9999)),
        ("bytes=9500-", (9500, 9999)),
        ("bytes=0-0", (0, 0)),
        ("bytes=-1", (9999, 9999)),
        ("bytes=0-", (0, 9999)),
        ("bytes=9999-9999", (9999, 9999)),
        ("bytes=5000-20000", (5000, 9999)),  # last clipped to the size
        ("bytes=-20000", (0, 9999)),  # suffix longer than the object: whole object
        ("bytes=0-" + "9" * 5000, (0, 9999)),  # past Python's int() digit limit
        ("bytes=-" + "9" * 5000, (0, 9999)),
        (" bytes=1-2 ", (1, 2)),
        # ignored, the whole object is sent with 200:
        ("bytes=0-1,5-6", None),  # several ranges: S3 ignores the header
        ("bytes=500-400", None),  # last < first: syntactically invalid
        ("bytes=-", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
        ("bytes 0-1", None),
        ("", None),
    ],
)
def test_parse_range(value: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, SIZE) == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("bytes=10000-", SIZE),
        ("bytes=10000-10001", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=0-", 0),
        ("bytes=-5", 0),
        ("bytes=0-0", 0),
        ("bytes=" + "9" * 5000 + "-", SIZE),
    ],
)
def test_unsatisfiable_ranges_are_invalid_range(value: str, size: int) -> None:
    with pytest.raises(errors.InvalidRange) as caught:
        parse_range(value, size)
    assert (caught.value.status, caught.value.code) == (416, "InvalidRange")
    assert caught.value.details["ActualObjectSize"] == str(size)


def test_content_range() -> None:
    assert content_range((0, 499), 10000) == "bytes 0-499/10000"
    assert content_range(None, 10000) == "bytes */10000"


# -- HTTP dates ------------------------------------------------------------------------------

NOV_6_1994 = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 §5.6.7)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        "Sun Nov 06 08:49:37 1994",
        " Sun, 06 Nov 1994 08:49:37 GMT ",
    ],
)
def test_parse_http_date_three_formats(value: str) -> None:
    assert parse_http_date(value) == NOV_6_1994


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "1994-11-06T08:49:37Z",
    ],
)
def test_parse_http_date_rejects(value: str) -> None:
    assert parse_http_date(value) is None


def test_rfc850_two_digit_year_pivot() -> None:
    assert parse_http_date("Thursday, 26-Nov-26 12:00:00 GMT") == parse_http_date(
        "Thu, 26 Nov 2026 12:00:00 GMT"
    )
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0


def test_format_http_date() -> None:
    assert format_http_date(NOV_6_1994) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date(format_http_date(1_795_000_000)) == 1_795_000_000


# -- conditional reads -----------------------------------------------------------------------

ETAG = '"abc"'
MODIFIED = NOV_6_1994
BEFORE = "Sat, 05 Nov 1994 08:49:37 GMT"
AT = "Sun, 06 Nov 1994 08:49:37 GMT"
AFTER = "Mon, 07 Nov 1994 08:49:37 GMT"
P, NM, PF = Condition.PROCEED, Condition.NOT_MODIFIED, Condition.PRECONDITION_FAILED


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, P),
        ({"if-match": '"abc"'}, P),
        ({"if-match": "abc"}, P),  # S3 accepts an unquoted ETag
        ({"if-match": '"x", "abc"'}, P),
        ({"if-match": "*"}, P),
        ({"if-match": '"x"'}, PF),
        ({"if-match": 'W/"abc"'}, P),
        ({"if-none-match": '"abc"'}, NM),
        ({"if-none-match": 'W/"abc"'}, NM),  # weak comparison
        ({"if-none-match": "*"}, NM),
        ({"if-none-match": '"x"'}, P),
        ({"if-modified-since": BEFORE}, P),
        ({"if-modified-since": AT}, NM),
        ({"if-modified-since": AFTER}, NM),
        ({"if-modified-since": "garbage"}, P),  # invalid date: ignored
        ({"if-unmodified-since": BEFORE}, PF),
        ({"if-unmodified-since": AT}, P),
        ({"if-unmodified-since": AFTER}, P),
        ({"if-unmodified-since": "garbage"}, P),
        # precedence (RFC 7232 §6; S3's GetObject documentation):
        # If-Match true and If-Unmodified-Since false -> 200 (IUS not evaluated)
        ({"if-match": ETAG, "if-unmodified-since": BEFORE}, P),
        # If-Match false wins over everything
        ({"if-match": '"x"', "if-none-match": '"x"'}, PF),
        ({"if-match": '"x"', "if-modified-since": AT}, PF),
        # If-Unmodified-Since false is checked before If-None-Match
        ({"if-unmodified-since": BEFORE, "if-none-match": ETAG}, PF),
        # If-None-Match false (it matches) and If-Modified-Since true -> 304
        ({"if-none-match": ETAG, "if-modified-since": BEFORE}, NM),
        # If-None-Match true: If-Modified-Since is not evaluated -> 200
        ({"if-none-match": '"x"', "if-modified-since": AFTER}, P),
        ({"if-match": ETAG, "if-none-match": ETAG}, NM),
    ],
)
def test_read_conditions(headers: dict[str, str], expected: Condition) -> None:
    assert evaluate_read_conditions(headers, ETAG, MODIFIED) is expected


def test_read_conditions_compare_whole_seconds() -> None:
    # Last-Modified is sent at second precision; the stored time is truncated to it.
    assert evaluate_read_conditions({"if-modified-since": AT}, ETAG, MODIFIED) is NM
    assert evaluate_read_conditions({"if-modified-since": AT}, ETAG, MODIFIED + 1) is P


# -- conditional writes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "current", "expected"),
    [
        ({}, None, P),
        ({}, ETAG, P),
        ({"if-none-match": "*"}, None, P),
        ({"if-none-match": "*"}, ETAG, PF),
        ({"if-match": ETAG}, ETAG, P),
        ({"if-match": "abc"}, ETAG, P),
        ({"if-match": '"x"'}, ETAG, PF),
        ({"if-match": "*"}, ETAG, P),
    ],
)
def test_write_conditions(
    headers: dict[str, str], current: str | None, expected: Condition
) -> None:
    assert evaluate_write_conditions(headers, current) is expected


def test_write_if_match_without_object_is_no_such_key() -> None:
    with pytest.raises(errors.NoSuchKey) as caught:
        evaluate_write_conditions({"if-match": ETAG}, None)
    assert caught.value.status == 404


def test_write_if_none_match_with_an_etag_is_not_implemented() -> None:
    with pytest.raises(errors.S3NotImplemented):
        evaluate_write_conditions({"if-none-match": ETAG}, None)
