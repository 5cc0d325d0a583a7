"""The garbage collector's pure decisions (atoll.gateway.gc, docs/gc.md): whether the
object index still references a shard file (`verdict`), whether a file has outlived
the grace period (`is_old`), the rate limit (`Pacer`) and the settings' checks. No
mocks, no I/O: real headers, manifests and upload records."""

from __future__ import annotations

import pytest

from atoll.erasure.shard_format import ShardHeader
from atoll.gateway.gc import GcConfig, Pacer, Verdict, is_old, verdict
from atoll.objects.index import make_upload_id
from atoll.objects.manifest import Layout, Manifest, Part, UploadRecord

MiB = 1024 * 1024
ETAG = "0" * 32
V1, V2 = "a" * 32, "b" * 32


def header(
    key: str = "k", version_id: str = V1, part: int = 0, index: int = 0, bucket: str = "photos"
) -> ShardHeader:
    return ShardHeader(bucket, key, version_id, part, index, 4, 2, MiB, 5 * MiB)


def part(number: int) -> Part:
    return Part(number, 5 * MiB, ETAG, 3, MiB, 7, (0, 1, 2, 3, 4, 5))


def laid_out(
    key: str = "k", version_id: str = V1, numbers: tuple[int, ...] = (0,), bucket: str = "photos"
) -> Manifest:
    parts = [part(n) for n in numbers]
    return Manifest(
        bucket,
        key,
        version_id,
        sum(p.size for p in parts),
        ETAG if numbers == (0,) else f"{ETAG}-{len(parts)}",
        1_764_000_000_000,
        "STANDARD",
        layout=Layout(1, 4, 2, parts),
    )


def inline(key: str = "k", version_id: str = V1) -> Manifest:
    return Manifest("photos", key, version_id, 2, ETAG, 1, "STANDARD", inline=b"hi")


def upload(key: str = "k", version_id: str = V1, bucket: str = "photos") -> UploadRecord:
    upload_id = make_upload_id(1_764_000_000_000, bytes(8))
    return UploadRecord(bucket, key, upload_id, version_id, 1_764_000_000_000, 1, "STANDARD")


# -- verdict -----------------------------------------------------------------------------


def test_a_file_of_the_committed_version_is_kept() -> None:
    for index in range(6):
        assert verdict(header(index=index), laid_out(), ()) is Verdict.KEEP


def test_a_file_nothing_names_is_deleted() -> None:
    """A crash between writing the shards and committing the manifest."""
    assert verdict(header(), None, ()) is Verdict.DELETE


def test_a_file_of_a_replaced_version_is_deleted() -> None:
    """An overwrite whose old shards the gateway did not get to delete."""
    assert verdict(header(version_id=V1), laid_out(version_id=V2), ()) is Verdict.DELETE


def test_only_the_parts_the_manifest_lists_are_kept() -> None:
    """Complete used parts 1 and 3; part 2's files were left behind."""
    manifest = laid_out(numbers=(1, 3))
    assert verdict(header(part=1), manifest, ()) is Verdict.KEEP
    assert verdict(header(part=3), manifest, ()) is Verdict.KEEP
    assert verdict(header(part=2), manifest, ()) is Verdict.DELETE
    assert verdict(header(part=0), manifest, ()) is Verdict.DELETE


def test_an_inline_manifest_of_the_same_version_references_no_file() -> None:
    assert verdict(header(), inline(), ()) is Verdict.DELETE


def test_a_part_of_an_upload_in_progress_is_kept_whatever_its_number() -> None:
    for number in (1, 2, 10_000):
        assert verdict(header(part=number), None, [upload()]) is Verdict.KEEP
    # ... even with a manifest of an older version at the key
    assert verdict(header(part=2), laid_out(version_id=V2), [upload()]) is Verdict.KEEP


def test_an_upload_of_another_version_does_not_keep_a_file() -> None:
    """The upload was aborted (or completed and overwritten); another one is running."""
    assert verdict(header(part=1), None, [upload(version_id=V2)]) is Verdict.DELETE


def test_records_of_another_key_or_bucket_do_not_count() -> None:
    """The caller reads the right key, but the verdict does not rely on it."""
    assert verdict(header(key="k"), laid_out(key="k2"), ()) is Verdict.DELETE
    assert verdict(header(key="k"), None, [upload(key="k2")]) is Verdict.DELETE
    assert verdict(header(bucket="photos"), laid_out(bucket="other"), ()) is Verdict.DELETE
    assert verdict(header(bucket="photos"), None, [upload(bucket="other")]) is Verdict.DELETE


def test_the_shard_index_and_durable_set_do_not_matter() -> None:
    """A shard that missed the write is the repairer's to rebuild, not gc's to delete."""
    missed = Manifest(
        "photos",
        "k",
        V1,
        5 * MiB,
        ETAG,
        1,
        "STANDARD",
        layout=Layout(1, 4, 2, [Part(0, 5 * MiB, ETAG, 3, MiB, 7, (0, 1, 2, 3))]),
    )
    assert verdict(header(index=5), missed, ()) is Verdict.KEEP


# -- age -----------------------------------------------------------------------------------


def test_is_old_compares_the_mtime_with_the_grace_period() -> None:
    now_s = 1_764_000_000.0
    written_ns = int(now_s * 1e9) - 3600 * 10**9
    assert is_old(written_ns, now_s, 3600)
    assert not is_old(written_ns + 1_000_000, now_s, 3600)
    assert is_old(written_ns + 1_000_000, now_s, 3599)
    assert is_old(int(now_s * 1e9), now_s, 0)


def test_a_file_from_the_future_is_young() -> None:
    now_s = 1_764_000_000.0
    assert not is_old(int((now_s + 60) * 1e9), now_s, 0)


# -- pacing --------------------------------------------------------------------------------


def test_pacer_spaces_checks() -> None:
    pacer = Pacer(10)  # 0.1 s apart
    assert pacer.delay(100.0) == 0
    assert pacer.delay(100.0) == pytest.approx(0.1)
    assert pacer.delay(100.1) == pytest.approx(0.1)  # the check it booked is at 100.2


def test_pacer_does_not_burst_after_falling_behind() -> None:
    pacer = Pacer(10)
    assert pacer.delay(100.0) == 0
    assert pacer.delay(105.0) == 0  # a slow index: 5 s late
    assert pacer.delay(105.0) == pytest.approx(0.1)  # no catching up


def test_pacer_waits_at_most_one_interval_when_the_clock_steps_back() -> None:
    pacer = Pacer(10)
    pacer.delay(1000.0)
    assert pacer.delay(10.0) == pytest.approx(0.1)
    assert pacer.delay(10.1) == pytest.approx(0.1)


def test_config_is_checked() -> None:
    GcConfig(grace_s=0)
    for bad in (
        {"grace_s": -1},
        {"grace_s": float("nan")},
        {"interval_s": 0},
        {"checks_per_s": 0},
        {"page_files": 0},
    ):
        with pytest.raises(ValueError):
            GcConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Pacer(0)
