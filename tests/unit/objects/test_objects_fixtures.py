"""Records written by format version 1 of the object layer stay readable (STYLE §8).

tests/fixtures/formats/v1/objects.txt was written once by
tests/fixtures/formats/make_objects_fixtures.py and is never regenerated; the layout
is docs/formats/objects.md. What it holds is spelled out here again, independently
of the generator.
"""

from __future__ import annotations

from pathlib import Path

from atoll.objects import (
    BucketRecord,
    Checksum,
    ChecksumAlgorithm,
    ChecksumType,
    Layout,
    Manifest,
    ObjectMetadata,
    Part,
    PartRecord,
    Record,
    RepairRecord,
    UploadRecord,
    bucket_key,
    decode_continuation_token,
    decode_record,
    encode_record,
    object_key,
    parse_object_key,
    parse_part_key,
    parse_repair_key,
    parse_upload_key,
    part_key,
    repair_key,
    upload_initiated_ms,
    upload_key,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "formats" / "v1" / "objects.txt"

UPLOAD_ID = "0000019ab697e9f40123456789abcdef"  # 1,764,000,000,500 ms, then 8 bytes
CLIP = "vid\u00e9o/clip.mp4"
PART_2 = Part(
    2, 1000, "b" * 32, 37, 1 << 20, 13, (0, 1, 2, 3, 4, 5), bytes([0x55, 0x66, 0x77, 0x88])
)
CLIP_METADATA = ObjectMetadata(
    content_type="video/mp4", content_disposition='inline; filename="c.mp4"'
)

EXPECTED: dict[str, Record] = {
    "manifest_inline": Manifest(
        bucket="photos",
        key="notes/hello.txt",
        version_id="3f9a1c2e5b7d4f60a1b2c3d4e5f60718",
        size=5,
        etag="5d41402abc4b2a76b9719d911017c592",  # MD5 of b"hello"
        last_modified_ms=1_764_000_000_000,
        storage_class="STANDARD",
        metadata=ObjectMetadata(
            content_type="text/plain",
            cache_control="max-age=60",
            user=(("author", "ana"), ("lang", "fr")),
        ),
        checksum=Checksum(ChecksumAlgorithm.CRC32C, bytes([0x9A, 0x71, 0xBB, 0x4C])),
        inline=b"hello",
    ),
    "manifest_multipart": Manifest(
        bucket="photos",
        key=CLIP,
        version_id="0c1d2e3f405162738495a6b7c8d9eafb",
        size=5 * 1024 * 1024 + 1000,
        etag="0123456789abcdef0123456789abcdef-2",
        last_modified_ms=1_764_000_001_000,
        storage_class="STANDARD",
        metadata=CLIP_METADATA,
        checksum=Checksum(ChecksumAlgorithm.CRC32, bytes([10, 11, 12, 13]), ChecksumType.COMPOSITE),
        layout=Layout(
            pool_id=1,
            k=4,
            m=2,
            parts=[
                Part(
                    1,
                    5 * 1024 * 1024,
                    "a" * 32,
                    37,
                    1 << 20,
                    12,
                    (0, 1, 2, 3, 5),
                    bytes([0x11, 0x22, 0x33, 0x44]),
                ),
                PART_2,
            ],
        ),
    ),
    "manifest_one_part": Manifest(
        bucket="docs",
        key="a",
        version_id="v1",
        size=70_000,
        etag="c" * 32,
        last_modified_ms=1_764_000_002_000,
        storage_class="REDUCED_REDUNDANCY",
        layout=Layout(2, 1, 2, [Part(0, 70_000, "c" * 32, 3, 1 << 20, 14, (0, 2))]),
    ),
    "bucket": BucketRecord("photos", "standard", "root", 1_764_000_000_000),
    "upload": UploadRecord(
        "photos",
        CLIP,
        UPLOAD_ID,
        "0c1d2e3f405162738495a6b7c8d9eafb",
        1_764_000_000_500,
        1,
        "STANDARD",
        CLIP_METADATA,
        ChecksumAlgorithm.CRC32,
        ChecksumType.COMPOSITE,
    ),
    "part": PartRecord(PART_2, 4, 2, 1_764_000_000_900, ChecksumAlgorithm.CRC32),
    "repair": RepairRecord(
        1, 37, "photos", CLIP, "0c1d2e3f405162738495a6b7c8d9eafb", 1, 12, 4, 2, (4,)
    ),
}


def records() -> dict[str, bytes]:
    out = {}
    for line in FIXTURE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, data = line.split()
            out[name] = bytes.fromhex(data)
    return out


def test_records_decode_and_encode_byte_for_byte() -> None:
    found = records()
    for name, record in EXPECTED.items():
        assert decode_record(found[name]) == record, name
        assert encode_record(record) == found[name], name


def test_the_fixture_holds_what_the_page_says() -> None:
    found = records()
    assert set(found) == {
        *EXPECTED,
        *(f"key_{n}" for n in EXPECTED if n != "part"),
        "key_part",
        "token",
    }
    # Spot checks of the raw bytes (docs/formats/objects.md §3-§4): magics, version.
    assert [found[n][:2].hex() for n in EXPECTED] == [
        "c001",
        "c001",
        "c001",
        "c101",
        "c201",
        "c301",
        "c401",
    ]
    assert found["manifest_inline"].endswith(b"\x05\x00\x00\x00hello")


def test_keys_are_the_documented_layout() -> None:
    found = records()
    root = b"\xff\x6f\x01"
    clip = CLIP.encode()
    assert found["key_manifest_inline"] == root + b"\x01photos\x00notes/hello.txt"
    assert found["key_manifest_multipart"] == root + b"\x01photos\x00" + clip
    assert found["key_manifest_one_part"] == root + b"\x01docs\x00a"
    assert found["key_bucket"] == root + b"\x02photos"
    assert found["key_upload"] == root + b"\x03photos\x00" + clip + b"\x00\x00" + UPLOAD_ID.encode()
    assert found["key_part"] == (
        root + b"\x04photos\x00" + clip + b"\x00\x00" + UPLOAD_ID.encode() + b"\x00\x00\x00\x02"
    )
    assert found["key_repair"] == (
        root
        + b"\x05"
        + (1).to_bytes(4, "big")
        + (37).to_bytes(4, "big")
        + b"photos\x00"
        + clip
        + b"\x00\x00"
        + b"0c1d2e3f405162738495a6b7c8d9eafb\x00"
        + (1).to_bytes(4, "big")
    )
    # Today's code writes and parses the same keys.
    assert object_key("photos", CLIP) == found["key_manifest_multipart"]
    assert bucket_key("photos") == found["key_bucket"]
    assert upload_key("photos", CLIP, UPLOAD_ID) == found["key_upload"]
    assert part_key("photos", CLIP, UPLOAD_ID, 2) == found["key_part"]
    assert (
        repair_key(1, 37, "photos", CLIP, "0c1d2e3f405162738495a6b7c8d9eafb", 1)
        == found["key_repair"]
    )
    assert parse_object_key(found["key_manifest_inline"]) == ("photos", "notes/hello.txt")
    assert parse_upload_key(found["key_upload"]) == ("photos", CLIP, UPLOAD_ID)
    assert parse_part_key(found["key_part"]) == ("photos", CLIP, UPLOAD_ID, 2)
    assert parse_repair_key(found["key_repair"])[:2] == (1, 37)
    assert upload_initiated_ms(UPLOAD_ID) == 1_764_000_000_500


def test_the_continuation_token_still_decodes() -> None:
    assert decode_continuation_token(records()["token"].decode("ascii")) == "notes/"
