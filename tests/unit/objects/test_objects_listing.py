"""S3 listing over the object index (docs/formats/objects.md §5), against a naive
model: ListObjects with prefix, delimiter, max-keys and markers, fed from a small
in-memory KV (a sorted list, scanned in random batch sizes); paging with the markers
it returns concatenates to the unpaged listing; ListMultipartUploads and ListParts."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.base.errors import InvariantError
from atoll.objects import (
    InvalidListArgument,
    ListQuery,
    ObjectListing,
    ObjectPage,
    UploadListing,
    UploadPage,
    decode_continuation_token,
    encode_continuation_token,
    make_upload_id,
    object_key,
    page_parts,
    part_key,
    parts_range,
    upload_key,
)

KEY_CHARS = st.sampled_from(["a", "b", "/", "-", "\x00", "é", "😀"])
KEYS = st.text(KEY_CHARS, min_size=1, max_size=6)
PREFIXES = st.text(KEY_CHARS, max_size=3)
DELIMITERS = st.sampled_from(["", "/", "-", "a", "/a", "é", "\x00"])
BUCKET = "abc"


@dataclass
class FakeKv:
    """A sorted list of (key, value) with a bounded range scan: a KV region's scan
    as the gateway sees it."""

    items: list[tuple[bytes, str]]
    scans: int = 0

    def scan(self, start: bytes, end: bytes, limit: int) -> tuple[list[tuple[bytes, str]], bool]:
        self.scans += 1
        keys = [k for k, _ in self.items]
        lo, hi = bisect.bisect_left(keys, start), bisect.bisect_left(keys, end)
        found = self.items[lo : min(hi, lo + limit)]
        return found, lo + limit < hi


def kv_of(keys: set[str], neighbours: bool = True) -> FakeKv:
    items = {object_key(BUCKET, k): k for k in keys}
    if neighbours:  # keys of the buckets on either side must never show up
        items |= {object_key("abb", k): "abb:" + k for k in keys}
        items |= {object_key("abc-d", k): "abc-d:" + k for k in keys}
    return FakeKv(sorted(items.items()))


def run(kv: FakeKv, query: ListQuery, batch: int | None = None) -> ObjectPage[str]:
    listing: ObjectListing[str] = ObjectListing(BUCKET, query)
    while (rng := listing.scan_range()) is not None:
        entries, more = kv.scan(rng.start, rng.end, batch or listing.scan_limit())
        listing.feed(entries, exhausted=not more)
    return listing.page()


def rollup(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[: at + len(delimiter)]


def model(
    keys: set[str], prefix: str, delimiter: str, max_keys: int, after: str
) -> tuple[list[str], list[str], bool]:
    """S3's rules written plainly: the keys after the marker with the prefix, rolled up
    at the first delimiter after the prefix (a common prefix already returned, the
    marker's own, is not returned again), in UTF-8 order, max_keys items counting keys
    and common prefixes alike."""
    marker_prefix = rollup(after, prefix, delimiter) if after.startswith(prefix) else None
    items: set[tuple[str, bool]] = set()
    for key in keys:
        if not key.startswith(prefix) or key.encode() <= after.encode():
            continue
        rolled = rollup(key, prefix, delimiter)
        if rolled is None:
            items.add((key, False))
        elif rolled != marker_prefix:
            items.add((rolled, True))
    ordered = sorted(items, key=lambda item: item[0].encode())
    page = ordered[:max_keys]
    contents = [name for name, is_prefix in page if not is_prefix]
    prefixes = [name for name, is_prefix in page if is_prefix]
    return contents, prefixes, max_keys > 0 and len(ordered) > max_keys


@settings(max_examples=300)
@given(
    st.sets(KEYS, max_size=25),
    PREFIXES,
    DELIMITERS,
    st.integers(0, 8),
    st.just("") | KEYS,
    st.none() | st.integers(1, 4),
)
def test_one_page_matches_the_model(
    keys: set[str], prefix: str, delimiter: str, max_keys: int, after: str, batch: int | None
) -> None:
    page = run(kv_of(keys), ListQuery(prefix, delimiter, max_keys, after), batch)
    contents, prefixes, truncated = model(keys, prefix, delimiter, max_keys, after)
    assert [key for key, _ in page.contents] == contents
    assert all(key == value for key, value in page.contents)
    assert list(page.common_prefixes) == prefixes
    assert page.is_truncated == truncated
    assert page.key_count == len(contents) + len(prefixes) <= max_keys
    if truncated:
        last = max([*contents, *prefixes], key=str.encode)
        assert page.next_marker == last
    else:
        assert page.next_marker is None


@settings(max_examples=300)
@given(
    st.sets(KEYS, max_size=30),
    PREFIXES,
    DELIMITERS,
    st.integers(1, 5),
    st.none() | st.integers(1, 4),
    st.booleans(),
)
def test_pages_concatenate_to_the_unpaged_listing(
    keys: set[str], prefix: str, delimiter: str, max_keys: int, batch: int | None, v2: bool
) -> None:
    kv = kv_of(keys)
    whole = run(kv, ListQuery(prefix, delimiter, 1000))
    assert not whole.is_truncated
    contents: list[str] = []
    prefixes: list[str] = []
    after = ""
    for _ in range(len(keys) + 2):
        page = run(kv, ListQuery(prefix, delimiter, max_keys, after), batch)
        contents += [key for key, _ in page.contents]
        prefixes += page.common_prefixes
        if not page.is_truncated:
            break
        assert page.key_count == max_keys and page.next_marker is not None
        # v2 hands the marker to the client as an opaque token.
        token = encode_continuation_token(page.next_marker)
        after = decode_continuation_token(token) if v2 else page.next_marker
    else:
        pytest.fail("paging did not end")
    assert contents == [key for key, _ in whole.contents]
    assert prefixes == list(whole.common_prefixes)


def test_a_common_prefix_costs_one_scan_not_one_read_per_key() -> None:
    keys = {f"dir{d}/{i:04}" for d in range(3) for i in range(500)} | {"top"}
    kv = kv_of(keys, neighbours=False)
    page = run(kv, ListQuery(delimiter="/"))
    assert page.common_prefixes == ("dir0/", "dir1/", "dir2/")
    assert [key for key, _ in page.contents] == ["top"]
    assert kv.scans <= 4  # the first scan, then one after each common prefix


def test_common_prefixes_count_toward_max_keys() -> None:
    kv = kv_of({"a/1", "a/2", "b", "c/1", "d"}, neighbours=False)
    page = run(kv, ListQuery(delimiter="/", max_keys=2))
    assert (page.common_prefixes, [k for k, _ in page.contents]) == (("a/",), ["b"])
    assert page.is_truncated and page.next_marker == "b"
    page = run(kv, ListQuery(delimiter="/", max_keys=2, after="b"))
    assert (page.common_prefixes, [k for k, _ in page.contents]) == (("c/",), ["d"])
    assert not page.is_truncated


def test_a_marker_that_is_a_common_prefix_skips_it() -> None:
    # The case of versity/versitygw#816: marker "boo/" with max-keys 1.
    kv = kv_of({"asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla"}, neighbours=False)
    page = run(kv, ListQuery(delimiter="/", max_keys=1, after="boo/"))
    assert page.common_prefixes == ("cquux/",) and not page.is_truncated


def test_max_keys_zero_is_an_empty_page_that_is_not_truncated() -> None:
    kv = kv_of({"a", "b"})
    page = run(kv, ListQuery(max_keys=0))
    assert page == ObjectPage((), (), False, None)
    assert kv.scans == 0


def test_list_queries_are_validated() -> None:
    bad_queries: list[Callable[[], object]] = [
        lambda: ListQuery(max_keys=-1),
        lambda: ListQuery(max_keys=1001),
        lambda: ListQuery(prefix="p" * 1025),
        lambda: ListQuery(after="\ud800"),
        lambda: ListQuery(delimiter=b"/"),  # type: ignore[arg-type]
    ]
    for bad in bad_queries:
        with pytest.raises(InvalidListArgument):
            bad()


def test_the_gateway_must_feed_what_it_was_asked_for() -> None:
    listing: ObjectListing[str] = ObjectListing(BUCKET, ListQuery())
    with pytest.raises(InvariantError):
        listing.feed([(object_key("abd", "k"), "x")], exhausted=True)  # past the range
    with pytest.raises(InvariantError):
        listing.feed([], exhausted=False)  # no progress
    with pytest.raises(InvariantError):
        listing.page()  # not finished


# -- multipart uploads ------------------------------------------------------------

UPLOADS = st.sets(
    st.tuples(
        st.text(KEY_CHARS, min_size=1, max_size=4),
        st.builds(make_upload_id, st.integers(0, 3), st.binary(min_size=8, max_size=8)),
    ),
    max_size=20,
)


def run_uploads(
    uploads: set[tuple[str, str]], query: ListQuery, upload_id_marker: str, batch: int | None
) -> UploadPage[str]:
    items = {upload_key(BUCKET, k, u): f"{k}|{u}" for k, u in uploads}
    items |= {upload_key("abd", k, u): "other" for k, u in uploads}
    kv = FakeKv(sorted(items.items()))
    listing: UploadListing[str] = UploadListing(BUCKET, query, upload_id_marker)
    while (rng := listing.scan_range()) is not None:
        entries, more = kv.scan(rng.start, rng.end, batch or listing.scan_limit())
        listing.feed(entries, exhausted=not more)
    return listing.page()


def uploads_model(
    uploads: set[tuple[str, str]], query: ListQuery, upload_id_marker: str
) -> tuple[list[tuple[str, str]], list[str], bool]:
    prefix, delimiter, after = query.prefix, query.delimiter, query.after
    marker_prefix = rollup(after, prefix, delimiter) if after.startswith(prefix) else None

    def is_after(key: str, upload_id: str) -> bool:
        # S3: keys after key-marker; with an upload-id-marker, also the uploads of
        # key-marker itself whose ids are greater.
        if key.encode() != after.encode():
            return key.encode() > after.encode()
        return bool(after and upload_id_marker) and upload_id > upload_id_marker

    items: set[tuple[bytes, str, bool]] = set()
    for key, upload_id in uploads:
        if not key.startswith(prefix) or not is_after(key, upload_id):
            continue
        rolled = rollup(key, prefix, delimiter)
        if rolled is None:
            items.add((key.encode(), upload_id, False))
        elif rolled != marker_prefix:
            items.add((rolled.encode(), "", True))
    ordered = sorted(items)
    page = ordered[: query.max_keys]
    listed = [(name.decode(), upload_id) for name, upload_id, is_prefix in page if not is_prefix]
    prefixes = [name.decode() for name, _, is_prefix in page if is_prefix]
    return listed, prefixes, query.max_keys > 0 and len(ordered) > query.max_keys


@settings(max_examples=300)
@given(
    UPLOADS,
    PREFIXES,
    DELIMITERS,
    st.integers(0, 6),
    st.just("") | st.text(KEY_CHARS, min_size=1, max_size=4),
    st.just("") | st.builds(make_upload_id, st.integers(0, 3), st.binary(min_size=8, max_size=8)),
    st.none() | st.integers(1, 3),
)
def test_upload_listing_matches_the_model(
    uploads: set[tuple[str, str]],
    prefix: str,
    delimiter: str,
    max_keys: int,
    after: str,
    upload_id_marker: str,
    batch: int | None,
) -> None:
    query = ListQuery(prefix, delimiter, max_keys, after)
    page = run_uploads(uploads, query, upload_id_marker, batch)
    listed, prefixes, truncated = uploads_model(uploads, query, upload_id_marker)
    assert [(k, u) for k, u, _ in page.uploads] == listed
    assert all(value == f"{k}|{u}" for k, u, value in page.uploads)
    assert list(page.common_prefixes) == prefixes
    assert page.is_truncated == truncated


@settings(max_examples=200)
@given(UPLOADS, PREFIXES, DELIMITERS, st.integers(1, 4))
def test_upload_pages_concatenate_to_the_unpaged_listing(
    uploads: set[tuple[str, str]], prefix: str, delimiter: str, max_keys: int
) -> None:
    whole = run_uploads(uploads, ListQuery(prefix, delimiter), "", None)
    listed: list[tuple[str, str, str]] = []
    prefixes: list[str] = []
    key_marker = upload_id_marker = ""
    for _ in range(len(uploads) + 2):
        page = run_uploads(
            uploads, ListQuery(prefix, delimiter, max_keys, key_marker), upload_id_marker, None
        )
        listed += page.uploads
        prefixes += page.common_prefixes
        if not page.is_truncated:
            break
        assert page.next_key_marker is not None and page.next_upload_id_marker is not None
        key_marker, upload_id_marker = page.next_key_marker, page.next_upload_id_marker
    else:
        pytest.fail("paging did not end")
    assert listed == list(whole.uploads)
    assert prefixes == list(whole.common_prefixes)


# -- parts ------------------------------------------------------------------------


@given(st.sets(st.integers(1, 10_000), max_size=30), st.integers(0, 10_000), st.integers(0, 8))
def test_list_parts_pages_in_part_number_order(
    numbers: set[int], after: int, max_parts: int
) -> None:
    upload_id = make_upload_id(1, bytes(8))
    items = {part_key(BUCKET, "k", upload_id, n): n for n in numbers}
    items |= {part_key(BUCKET, "k", make_upload_id(2, bytes(8)), n): -n for n in numbers}
    kv = FakeKv(sorted((k, str(v)) for k, v in items.items()))
    rng = parts_range(BUCKET, "k", upload_id, after)
    entries, _ = kv.scan(rng.start, rng.end, max_parts + 1)
    page = page_parts(entries, max_parts)
    expected = sorted(n for n in numbers if n > after)
    assert [n for n, _ in page.parts] == expected[:max_parts]
    assert all(value == str(n) for n, value in page.parts)
    assert page.is_truncated == (max_parts > 0 and len(expected) > max_parts)
    assert page.next_part_number_marker == (expected[:max_parts][-1] if expected[:max_parts] else 0)
