"""The S3 operations, one handler each, between an authenticated, routed request and
the object store (issue 5 §2). Does I/O: reads request bodies from aiohttp, calls
`ObjectStore`, writes responses (GetObject streams its body).

`atoll.gateway.http` (the server shell) authenticates and routes a request, builds a
`RequestContext` and calls `HANDLERS[operation]`; everything a handler raises that a
client should see is an `S3Error` the shell renders. What a header or query parameter
means (metadata, copy sources, list parameters, which bytes a GET returns) is decided
by the small pure functions in the first half of this module, the shell around them
by the handlers in the second half. The S3 documents themselves are `s3proto`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import quote

from aiohttp import web

from atoll.gateway import s3proto, sigv4
from atoll.gateway.checksums import Algorithm, algorithm_of_header, b64
from atoll.gateway.errors import (
    CodedS3Error,
    InvalidArgument,
    InvalidRequest,
    MalformedXML,
    MetadataTooLarge,
    PreconditionFailed,
)
from atoll.gateway.s3proto import Operation
from atoll.gateway.store import CopySource
from atoll.objects.errors import MetadataTooLarge as MetadataTooLargeValue
from atoll.objects.errors import RecordError
from atoll.objects.index import (
    LIST_KEYS_MAX,
    ListQuery,
    check_max_keys,
    decode_continuation_token,
    encode_continuation_token,
)
from atoll.objects.manifest import (
    ChecksumAlgorithm,
    ChecksumType,
    Manifest,
    ManifestSummary,
    ObjectMetadata,
    PartRecord,
    user_metadata,
)

if TYPE_CHECKING:  # the shell imports this module: the context is only a type here
    from atoll.gateway.http import RequestContext

STANDARD_STORAGE_CLASS = "STANDARD"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 answers for an object stored without one
USER_METADATA_PREFIX = "x-amz-meta-"
CREATE_BUCKET_BODY_BYTES_MAX = 64 * 1024
"""A CreateBucketConfiguration is a few hundred bytes; it is parsed, then ignored."""


# -- errors of the HTTP layer --------------------------------------------------------------


class InvalidPartNumber(CodedS3Error):
    CODE = "InvalidPartNumber"
    STATUS = 416
    MESSAGE = "The requested partnumber is not satisfiable"


# -- pure: what request headers and parameters mean -----------------------------------------

_CONTENT_HEADERS = (
    ("content-type", "content_type"),
    ("content-encoding", "content_encoding"),
    ("content-disposition", "content_disposition"),
    ("content-language", "content_language"),
    ("cache-control", "cache_control"),
    ("expires", "expires"),
)
_RESPONSE_OVERRIDES = (
    ("response-content-type", "Content-Type"),
    ("response-content-language", "Content-Language"),
    ("response-expires", "Expires"),
    ("response-cache-control", "Cache-Control"),
    ("response-content-disposition", "Content-Disposition"),
    ("response-content-encoding", "Content-Encoding"),
)
_COPY_CONDITIONS = (
    ("x-amz-copy-source-if-match", "if-match"),
    ("x-amz-copy-source-if-none-match", "if-none-match"),
    ("x-amz-copy-source-if-modified-since", "if-modified-since"),
    ("x-amz-copy-source-if-unmodified-since", "if-unmodified-since"),
)
_READ_CONDITIONS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
_WRITE_CONDITIONS = ("if-match", "if-none-match")
_COPY_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{1,19})")
_DIGITS = re.compile(r"[0-9]+")


def object_metadata(headers: sigv4.Headers) -> ObjectMetadata:
    """The content headers and `x-amz-meta-*` of a PutObject, CopyObject (REPLACE) or
    CreateMultipartUpload. Repeated headers are joined with commas, as S3 does;
    `aws-chunked` is dropped from Content-Encoding. MetadataTooLarge past 2 KB of
    user metadata; InvalidArgument for a value the manifest cannot hold."""
    values: dict[str, str] = {}
    for header, name in _CONTENT_HEADERS:
        found = headers.get_all(header)
        if found:
            values[name] = ",".join(found)
    values["content_encoding"] = sigv4.stored_content_encoding(values.get("content_encoding")) or ""
    user: dict[str, list[str]] = {}
    for name, value in headers:
        if name.startswith(USER_METADATA_PREFIX) and len(name) > len(USER_METADATA_PREFIX):
            user.setdefault(name[len(USER_METADATA_PREFIX) :], []).append(value.strip())
    try:
        pairs = user_metadata((name, ",".join(found)) for name, found in user.items())
        return ObjectMetadata(**values, user=pairs)
    except MetadataTooLargeValue as err:
        raise MetadataTooLarge(
            Size=str(err.size_bytes), MaxSizeAllowed=str(err.limit_bytes)
        ) from None
    except RecordError as err:
        raise InvalidArgument(f"A metadata header cannot be stored: {err.reason}.") from None


def storage_class(headers: sigv4.Headers) -> str | None:
    """`x-amz-storage-class` (None: the bucket's pool); the store checks the name."""
    value = headers.get("x-amz-storage-class")
    return value.strip() if value is not None and value.strip() else None


def pick_headers(headers: sigv4.Headers, names: Iterable[str]) -> dict[str, str] | None:
    """The headers of `names` the request carries (None if none)."""
    found = {name: value for name in names if (value := headers.get(name)) is not None}
    return found or None


def write_conditions(headers: sigv4.Headers) -> dict[str, str] | None:
    """If-Match / If-None-Match of a PutObject or CompleteMultipartUpload."""
    return pick_headers(headers, _WRITE_CONDITIONS)


def checksum_algorithm(headers: sigv4.Headers) -> ChecksumAlgorithm | None:
    """`x-amz-checksum-algorithm` of a CreateMultipartUpload: CRC32, CRC32C, SHA1,
    SHA256 or CRC64NVME (the store decides whether it computes it)."""
    value = headers.get("x-amz-checksum-algorithm")
    if value is None:
        return None
    try:
        return ChecksumAlgorithm[value.strip().upper()]
    except KeyError:
        raise InvalidRequest("Checksum algorithm provided is unsupported.") from None


def body_digests(headers: sigv4.Headers) -> tuple[Algorithm, ...]:
    """The digests to compute over a PutObject / UploadPart body: MD5 for the ETag,
    and the algorithm the SDK announced (`x-amz-sdk-checksum-algorithm`), so the
    store has the object's checksum even when the client sent no value for it."""
    announced = (headers.get("x-amz-sdk-checksum-algorithm") or "").strip().lower()
    extra = [a for a in Algorithm if a.value == announced and a is not Algorithm.MD5]
    return (Algorithm.MD5, *extra)


def require_version_null(version_id: str | None) -> None:
    """Buckets are unversioned: the only version of an object is `null`."""
    if version_id is not None and version_id != "null":
        raise InvalidArgument("Invalid version id specified", ArgumentName="versionId", ArgumentValue=version_id)  # fmt: skip


def copy_source(headers: sigv4.Headers, *, ranged: bool) -> CopySource:
    """The CopySource of a CopyObject (`ranged` False) or UploadPartCopy: the
    `x-amz-copy-source`, its `-if-*` conditions (renamed to the plain conditional
    header names) and, for UploadPartCopy, `x-amz-copy-source-range`."""
    bucket, key, version_id = s3proto.parse_copy_source(headers.get("x-amz-copy-source") or "")
    require_version_null(version_id)
    conditions = {
        plain: value for name, plain in _COPY_CONDITIONS if (value := headers.get(name)) is not None
    }
    byte_range = None
    value = headers.get("x-amz-copy-source-range")
    if ranged and value is not None:
        byte_range = copy_source_range(value)
    return CopySource(bucket, key, byte_range, conditions or None)


def copy_source_range(value: str) -> tuple[int, int]:
    """`bytes=first-last` (both given, first <= last) -> (first, last)."""
    match = _COPY_RANGE.fullmatch(value.strip())
    if match is None or int(match.group(1)) > int(match.group(2)):
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=value,
        )
    return int(match.group(1)), int(match.group(2))


def replace_metadata(headers: sigv4.Headers) -> bool:
    """`x-amz-metadata-directive`: COPY (the default) or REPLACE."""
    value = (headers.get("x-amz-metadata-directive") or "COPY").strip().upper()
    if value not in ("COPY", "REPLACE"):
        raise InvalidArgument("Unknown metadata directive.", ArgumentName="x-amz-metadata-directive", ArgumentValue=value)  # fmt: skip
    return value == "REPLACE"


def int_param(query: Mapping[str, str], name: str, default: int, *, high: int) -> int:
    """A non-negative integer query parameter, at most `high` (larger values mean
    `high`, as max-keys does in S3); InvalidArgument if it is not one."""
    text = query.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text):
        raise InvalidArgument(f"Provided {name} not an integer or within integer range", ArgumentName=name, ArgumentValue=text)  # fmt: skip
    return min(int(text), high) if len(text) <= 12 else high


def max_keys(query: Mapping[str, str], name: str) -> int:
    return check_max_keys(int_param(query, name, LIST_KEYS_MAX, high=LIST_KEYS_MAX))


def part_number(query: Mapping[str, str]) -> int:
    """`partNumber`: 1 .. 10,000."""
    number = int_param(query, "partNumber", 0, high=s3proto.PARTS_MAX + 1)
    if not 1 <= number <= s3proto.PARTS_MAX:
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive", ArgumentName="partNumber", ArgumentValue=query.get("partNumber", ""))  # fmt: skip
    return number


def encoding_type(query: Mapping[str, str]) -> str | None:
    value = query.get("encoding-type")
    if value is None:
        return None
    if value.lower() != "url":
        raise InvalidArgument("Invalid Encoding Method specified in Request", ArgumentName="encoding-type", ArgumentValue=value)  # fmt: skip
    return "url"


def continuation_after(query: Mapping[str, str]) -> str:
    """ListObjectsV2: the key after which the page starts (continuation-token first,
    else start-after)."""
    token = query.get("continuation-token")
    if token is None:
        return query.get("start-after", "")
    try:
        return decode_continuation_token(token)
    except ValueError:
        raise InvalidArgument("The continuation token provided is incorrect", ArgumentName="continuation-token") from None  # fmt: skip


def checksum_header_value(manifest: Manifest) -> tuple[str, str] | None:
    """(`x-amz-checksum-<alg>`, base64 value) of an object with a checksum; a
    composite (multipart) checksum carries `-N`, the number of parts."""
    checksum = manifest.checksum
    if checksum is None:
        return None
    value = b64(checksum.value)
    if checksum.type is ChecksumType.COMPOSITE and manifest.layout is not None:
        value += f"-{len(manifest.layout.parts)}"
    return f"x-amz-checksum-{checksum.algorithm.name.lower()}", value


def object_headers(manifest: Manifest, *, checksum: bool) -> list[tuple[str, str]]:
    """The headers GetObject and HeadObject answer with for `manifest` (not the
    length or range, which depend on the request)."""
    metadata = manifest.metadata
    out = [
        ("ETag", s3proto.quote_etag(manifest.etag)),
        ("Last-Modified", s3proto.format_http_date(manifest.last_modified_ms // 1000)),
        ("Accept-Ranges", "bytes"),
        ("Content-Type", metadata.content_type or DEFAULT_CONTENT_TYPE),
    ]
    for header, name in _CONTENT_HEADERS[1:]:
        value = getattr(metadata, name)
        if value:
            out.append((header.title(), value))
    out += [(USER_METADATA_PREFIX + name, value) for name, value in metadata.user]
    if manifest.storage_class != STANDARD_STORAGE_CLASS:
        out.append(("x-amz-storage-class", manifest.storage_class))
    if checksum and (pair := checksum_header_value(manifest)) is not None:
        out.append(pair)
        checksum_type = manifest.checksum.type if manifest.checksum else ChecksumType.FULL_OBJECT
        out.append(("x-amz-checksum-type", checksum_type.name))
    return out


def override_headers(
    headers: list[tuple[str, str]], query: Mapping[str, str]
) -> list[tuple[str, str]]:
    """GetObject's `response-*` query parameters replace the headers they name."""
    overrides = {h.lower(): (h, query[p]) for p, h in _RESPONSE_OVERRIDES if p in query}
    kept = [(name, value) for name, value in headers if name.lower() not in overrides]
    return kept + list(overrides.values())


def part_range(manifest: Manifest, number: int) -> tuple[tuple[int, int] | None, int]:
    """GetObject `?partNumber=N`: (the part's bytes (first, last), or None for all of
    an empty object; the object's part count). A single-part object has part 1 only;
    InvalidPartNumber past the last part."""
    layout = manifest.layout
    if layout is None or layout.parts[0].number == 0:
        if number != 1:
            raise InvalidPartNumber(PartNumberRequested=str(number), ActualPartCount="1")
        return ((0, manifest.size - 1) if manifest.size else None), 1
    offset = 0
    for part in layout.parts:
        if part.number == number:
            return ((offset, offset + part.size - 1) if part.size else None), len(layout.parts)
        offset += part.size
    raise InvalidPartNumber(PartNumberRequested=str(number), ActualPartCount=str(len(layout.parts)))


@dataclasses.dataclass(frozen=True, slots=True)
class ReadPlan:
    """What a GetObject or HeadObject answers: status (200, 206 or 304), headers,
    and the object's bytes `[first, end)` to send."""

    status: int
    headers: list[tuple[str, str]]
    first: int = 0
    end: int = 0


def read_plan(
    manifest: Manifest, headers: sigv4.Headers, query: Mapping[str, str], *, get: bool
) -> ReadPlan:
    """Conditions first (412 PreconditionFailed, 304 with the ETag), then the range
    (`Range` or `?partNumber`; 416 InvalidRange / InvalidPartNumber), then headers:
    the object's checksum only for the whole object and `x-amz-checksum-mode:
    ENABLED`, the `response-*` overrides only on GET."""
    conditions = pick_headers(headers, _READ_CONDITIONS) or {}
    modified_s = manifest.last_modified_ms // 1000
    outcome = s3proto.evaluate_read_conditions(conditions, manifest.etag, modified_s)
    if outcome is s3proto.Condition.PRECONDITION_FAILED:
        raise PreconditionFailed()
    if outcome is s3proto.Condition.NOT_MODIFIED:
        not_modified = [
            ("ETag", s3proto.quote_etag(manifest.etag)),
            ("Last-Modified", s3proto.format_http_date(modified_s)),
        ]
        return ReadPlan(304, not_modified)
    parts_count = None
    if "partNumber" in query:
        byte_range, parts_count = part_range(manifest, part_number(query))
    else:
        byte_range = s3proto.parse_range(headers.get("range"), manifest.size)
    whole = byte_range is None and parts_count is None
    mode = (headers.get("x-amz-checksum-mode") or "").strip().upper()
    out = object_headers(manifest, checksum=whole and mode == "ENABLED")
    if get:
        out = override_headers(out, query)
    if parts_count is not None:
        out.append(("x-amz-mp-parts-count", str(parts_count)))
    if byte_range is None:
        return ReadPlan(200, out, 0, manifest.size)
    out.append(("Content-Range", s3proto.content_range(byte_range, manifest.size)))
    return ReadPlan(206, out, byte_range[0], byte_range[1] + 1)


def object_entry(
    key: str, summary: ManifestSummary, owner: s3proto.Owner | None
) -> s3proto.ObjectEntry:
    return s3proto.ObjectEntry(
        key, summary.last_modified_ms, summary.etag, summary.size, summary.storage_class, owner
    )


def part_headers(record: PartRecord) -> list[tuple[str, str]]:
    """UploadPart's ETag, and the part's checksum when it has one."""
    out = [("ETag", s3proto.quote_etag(record.part.etag))]
    if record.checksum_algorithm is not None and record.part.checksum:
        name = f"x-amz-checksum-{record.checksum_algorithm.name.lower()}"
        out.append((name, b64(record.part.checksum)))
    return out


Handler: TypeAlias = "Callable[[RequestContext], Awaitable[web.StreamResponse]]"


# -- buckets -----------------------------------------------------------------------------------


async def list_buckets(ctx: RequestContext) -> web.StreamResponse:
    buckets = await ctx.store.list_buckets()
    entries = [s3proto.BucketEntry(b.name, b.created_ms) for b in buckets]
    owner = s3proto.Owner(ctx.owner, ctx.owner)
    return ctx.response(body=s3proto.render_list_buckets(owner, entries))


async def create_bucket(ctx: RequestContext) -> web.StreamResponse:
    body = await ctx.small_body(CREATE_BUCKET_BODY_BYTES_MAX)
    if body.strip():
        # CreateBucketConfiguration (a LocationConstraint, ...) is parsed but not
        # used: every bucket lives in this cluster's one region.
        root = s3proto.parse_xml(body, bytes_max=CREATE_BUCKET_BODY_BYTES_MAX)
        if root.name != "CreateBucketConfiguration":
            raise MalformedXML()
    await ctx.store.create_bucket(ctx.bucket, ctx.owner)
    return ctx.response(headers=[("Location", "/" + ctx.bucket)])


async def delete_bucket(ctx: RequestContext) -> web.StreamResponse:
    await ctx.store.delete_bucket(ctx.bucket)
    return ctx.response(204)


async def head_bucket(ctx: RequestContext) -> web.StreamResponse:
    await ctx.store.head_bucket(ctx.bucket)
    return ctx.response(headers=[("x-amz-bucket-region", ctx.region)])


async def get_bucket_location(ctx: RequestContext) -> web.StreamResponse:
    await ctx.store.head_bucket(ctx.bucket)
    return ctx.response(body=s3proto.render_location(ctx.region))


# -- objects -----------------------------------------------------------------------------------


async def get_object_tagging(ctx: RequestContext) -> web.StreamResponse:
    await ctx.store.head_object(ctx.bucket, ctx.key)
    return ctx.response(body=s3proto.render_empty_tagging())


async def put_object(ctx: RequestContext) -> web.StreamResponse:
    metadata = object_metadata(ctx.headers)
    body = ctx.body(body_digests(ctx.headers))
    manifest = await ctx.store.put_object(
        ctx.bucket,
        ctx.key,
        body,
        metadata=metadata,
        storage_class=storage_class(ctx.headers),
        conditions=write_conditions(ctx.headers),
    )
    headers = [("ETag", s3proto.quote_etag(manifest.etag))]
    if (pair := checksum_header_value(manifest)) is not None:
        headers.append(pair)
    return ctx.response(headers=headers)


async def head_object(ctx: RequestContext) -> web.StreamResponse:
    require_version_null(ctx.query.get("versionId"))
    manifest = await ctx.store.head_object(ctx.bucket, ctx.key)
    plan = read_plan(manifest, ctx.headers, ctx.query, get=False)
    response = ctx.response(plan.status, headers=plan.headers)
    if plan.status != 304:
        response.headers["Content-Length"] = str(plan.end - plan.first)
    return response


async def get_object(ctx: RequestContext) -> web.StreamResponse:
    require_version_null(ctx.query.get("versionId"))
    manifest = await ctx.store.head_object(ctx.bucket, ctx.key)
    plan = read_plan(manifest, ctx.headers, ctx.query, get=True)
    if plan.status == 304:
        return ctx.response(304, headers=plan.headers)
    length = plan.end - plan.first
    reader = ctx.store.read_object(manifest, plan.first, plan.end)
    async with contextlib.aclosing(reader) as pieces:
        if length <= ctx.limits.whole_response_bytes_max:
            data = b"".join([bytes(piece) async for piece in pieces])
            response = ctx.response(plan.status, headers=plan.headers)
            response.body = data
            return response
        return await _stream(ctx, plan, pieces)


async def _stream(
    ctx: RequestContext, plan: ReadPlan, pieces: AsyncIterator[memoryview]
) -> web.StreamResponse:
    """A large GetObject answer, written as the store yields it. The first piece is
    read before the headers go out, so a failure to read the object at all is still
    answered with an error document; a later one cuts the connection (the shell)."""
    response = web.StreamResponse(status=plan.status)
    for name, value in plan.headers:
        response.headers.add(name, value)
    response.content_length = plan.end - plan.first
    piece: memoryview | None = await anext(pieces, None)
    await ctx.start(response)
    while piece is not None:
        await response.write(piece)
        piece = await anext(pieces, None)
    await response.write_eof()
    return response


async def delete_object(ctx: RequestContext) -> web.StreamResponse:
    require_version_null(ctx.query.get("versionId"))
    await ctx.store.delete_object(ctx.bucket, ctx.key)
    return ctx.response(204)


async def delete_objects(ctx: RequestContext) -> web.StreamResponse:
    headers = ctx.headers
    # S3 requires the body's integrity be covered (Content-MD5 or a checksum).
    digested = "x-amz-trailer" in headers or any(
        algorithm_of_header(name) is not None for name in headers.names()
    )
    if not digested:
        raise InvalidRequest(
            "Missing required header for this request: Content-MD5 or x-amz-checksum-*"
        )
    request = s3proto.parse_delete(await ctx.small_body(s3proto.DELETE_BODY_BYTES_MAX))
    keys = [key for key, version in request.objects if version in (None, "null")]
    outcomes = {o.key: o for o in await ctx.store.delete_objects(ctx.bucket, keys)}
    deleted: list[tuple[str, str | None]] = []
    failures: list[s3proto.DeleteFailure] = []
    for key, version in request.objects:
        if version not in (None, "null"):
            failures.append(s3proto.DeleteFailure(key, "NoSuchVersion", "The specified version does not exist.", version))  # fmt: skip
            continue
        outcome = outcomes.get(key)
        if outcome is not None and outcome.error_code:
            failures.append(s3proto.DeleteFailure(key, outcome.error_code, outcome.error_message, version))  # fmt: skip
        else:
            deleted.append((key, version))
    document = s3proto.render_delete_result(deleted, failures, quiet=request.quiet)
    return ctx.response(body=document)


async def copy_object(ctx: RequestContext) -> web.StreamResponse:
    source = copy_source(ctx.headers, ranged=False)
    metadata = object_metadata(ctx.headers) if replace_metadata(ctx.headers) else None
    manifest = await ctx.store.copy_object(
        source, ctx.bucket, ctx.key, metadata=metadata, storage_class=storage_class(ctx.headers)
    )
    headers = []
    if (pair := checksum_header_value(manifest)) is not None:
        headers.append(pair)
    document = s3proto.render_copy_result(manifest.etag, manifest.last_modified_ms)
    return ctx.response(body=document, headers=headers)


# -- listings ----------------------------------------------------------------------------------


def _list_query(query: Mapping[str, str], after: str, max_name: str = "max-keys") -> ListQuery:
    return ListQuery(
        prefix=query.get("prefix", ""),
        delimiter=query.get("delimiter", ""),
        max_keys=max_keys(query, max_name),
        after=after,
    )


async def _object_page(
    ctx: RequestContext, *, after: str, marker: str, owner: s3proto.Owner | None
) -> tuple[s3proto.ListPage, str | None]:
    """A page of the listing of the keys after `after`, as s3proto renders it
    (`marker` is the Marker / StartAfter / KeyMarker it shows), and the marker the
    next page starts after (None when this is the last page)."""
    query = ctx.query
    encoding = encoding_type(query)
    list_query = _list_query(query, after)
    page = await ctx.store.list_objects(ctx.bucket, list_query)
    rendered = s3proto.ListPage(
        bucket=ctx.bucket,
        prefix=list_query.prefix,
        delimiter=list_query.delimiter or None,
        max_keys=list_query.max_keys,
        is_truncated=page.is_truncated,
        contents=[object_entry(key, summary, owner) for key, summary in page.contents],
        common_prefixes=page.common_prefixes,
        marker=marker,
        encoding_type=encoding,
    )
    return rendered, page.next_marker if page.is_truncated else None


async def list_objects(ctx: RequestContext) -> web.StreamResponse:
    marker = ctx.query.get("marker", "")
    owner = s3proto.Owner(ctx.owner, ctx.owner)
    page, next_marker = await _object_page(ctx, after=marker, marker=marker, owner=owner)
    if page.delimiter is not None:  # S3 sends NextMarker only with a delimiter
        page = dataclasses.replace(page, next_marker=next_marker)
    return ctx.response(body=s3proto.render_list_objects(page))


async def list_objects_v2(ctx: RequestContext) -> web.StreamResponse:
    query = ctx.query
    fetch_owner = query.get("fetch-owner", "").lower() == "true"
    owner = s3proto.Owner(ctx.owner, ctx.owner) if fetch_owner else None
    after = continuation_after(query)
    marker = query.get("start-after", "")
    page, next_marker = await _object_page(ctx, after=after, marker=marker, owner=owner)
    page = dataclasses.replace(
        page,
        next_marker=encode_continuation_token(next_marker) if next_marker is not None else None,
        continuation_token=query.get("continuation-token"),
    )
    return ctx.response(body=s3proto.render_list_objects_v2(page, fetch_owner=fetch_owner))


async def list_object_versions(ctx: RequestContext) -> web.StreamResponse:
    # An unversioned bucket: every object is its one version, `null`, so the
    # version-id-marker adds nothing to the key-marker.
    marker = ctx.query.get("key-marker", "")
    page, next_marker = await _object_page(ctx, after=marker, marker=marker, owner=None)
    owner = s3proto.Owner(ctx.owner, ctx.owner)
    document = s3proto.render_list_versions(page, next_key_marker=next_marker, owner=owner)
    return ctx.response(body=document)


# -- multipart uploads -------------------------------------------------------------------------


async def create_multipart_upload(ctx: RequestContext) -> web.StreamResponse:
    algorithm = checksum_algorithm(ctx.headers)
    upload = await ctx.store.create_upload(
        ctx.bucket,
        ctx.key,
        metadata=object_metadata(ctx.headers),
        storage_class=storage_class(ctx.headers),
        checksum_algorithm=algorithm,
    )
    headers = []
    if upload.checksum_algorithm is not None:
        headers.append(("x-amz-checksum-algorithm", upload.checksum_algorithm.name))
        if upload.checksum_type is not None:
            headers.append(("x-amz-checksum-type", upload.checksum_type.name))
    document = s3proto.render_initiate_multipart_upload(ctx.bucket, ctx.key, upload.upload_id)
    return ctx.response(body=document, headers=headers)


async def upload_part(ctx: RequestContext) -> web.StreamResponse:
    number = part_number(ctx.query)
    body = ctx.body(body_digests(ctx.headers))
    record = await ctx.store.upload_part(
        ctx.bucket, ctx.key, ctx.query.get("uploadId", ""), number, body
    )
    return ctx.response(headers=part_headers(record))


async def upload_part_copy(ctx: RequestContext) -> web.StreamResponse:
    number = part_number(ctx.query)
    source = copy_source(ctx.headers, ranged=True)
    record = await ctx.store.upload_part_copy(
        ctx.bucket, ctx.key, ctx.query.get("uploadId", ""), number, source
    )
    document = s3proto.render_copy_result(record.part.etag, record.last_modified_ms, part=True)
    return ctx.response(body=document)


async def complete_multipart_upload(ctx: RequestContext) -> web.StreamResponse:
    body = await ctx.small_body(s3proto.COMPLETE_BODY_BYTES_MAX)
    parts = s3proto.parse_complete_multipart_upload(body)
    manifest = await ctx.store.complete_upload(
        ctx.bucket,
        ctx.key,
        ctx.query.get("uploadId", ""),
        parts,
        conditions=write_conditions(ctx.headers),
    )
    host = ctx.headers.get("host") or "localhost"
    location = f"http://{host}/{quote(ctx.bucket)}/{quote(ctx.key)}"
    headers = []
    if (pair := checksum_header_value(manifest)) is not None:
        headers.append(pair)
    document = s3proto.render_complete_multipart_upload(
        location, ctx.bucket, ctx.key, manifest.etag
    )
    return ctx.response(body=document, headers=headers)


async def abort_multipart_upload(ctx: RequestContext) -> web.StreamResponse:
    await ctx.store.abort_upload(ctx.bucket, ctx.key, ctx.query.get("uploadId", ""))
    return ctx.response(204)


async def list_parts(ctx: RequestContext) -> web.StreamResponse:
    query = ctx.query
    marker = int_param(query, "part-number-marker", 0, high=s3proto.PARTS_MAX)
    limit = max_keys(query, "max-parts")
    upload, page = await ctx.store.list_parts(
        ctx.bucket, ctx.key, query.get("uploadId", ""), after_part=marker, max_parts=limit
    )
    entries = [
        s3proto.PartEntry(number, r.last_modified_ms, r.part.etag, r.part.size)
        for number, r in page.parts
    ]
    document = s3proto.render_list_parts(
        s3proto.PartsPage(
            bucket=ctx.bucket,
            key=ctx.key,
            upload_id=upload.upload_id,
            owner=s3proto.Owner(ctx.owner, ctx.owner),
            part_number_marker=marker,
            next_part_number_marker=page.next_part_number_marker,
            max_parts=limit,
            is_truncated=page.is_truncated,
            parts=entries,
            storage_class=upload.storage_class,
        )
    )
    return ctx.response(body=document)


async def list_multipart_uploads(ctx: RequestContext) -> web.StreamResponse:
    query = ctx.query
    key_marker = query.get("key-marker", "")
    id_marker = query.get("upload-id-marker", "") if key_marker else ""
    list_query = _list_query(query, key_marker, "max-uploads")
    page = await ctx.store.list_uploads(ctx.bucket, list_query, id_marker)
    owner = s3proto.Owner(ctx.owner, ctx.owner)
    uploads = [
        s3proto.UploadEntry(key, upload_id, record.initiated_ms, owner, record.storage_class)
        for key, upload_id, record in page.uploads
    ]
    document = s3proto.render_list_multipart_uploads(
        s3proto.UploadsPage(
            bucket=ctx.bucket,
            prefix=list_query.prefix,
            delimiter=list_query.delimiter or None,
            key_marker=key_marker,
            upload_id_marker=id_marker,
            next_key_marker=page.next_key_marker or "",
            next_upload_id_marker=page.next_upload_id_marker or "",
            max_uploads=list_query.max_keys,
            is_truncated=page.is_truncated,
            uploads=uploads,
            common_prefixes=page.common_prefixes,
            encoding_type=encoding_type(query),
        )
    )
    return ctx.response(body=document)


HANDLERS: Mapping[Operation, Handler] = {
    Operation.LIST_BUCKETS: list_buckets,
    Operation.CREATE_BUCKET: create_bucket,
    Operation.DELETE_BUCKET: delete_bucket,
    Operation.HEAD_BUCKET: head_bucket,
    Operation.GET_BUCKET_LOCATION: get_bucket_location,
    Operation.PUT_OBJECT: put_object,
    Operation.GET_OBJECT: get_object,
    Operation.HEAD_OBJECT: head_object,
    Operation.DELETE_OBJECT: delete_object,
    Operation.DELETE_OBJECTS: delete_objects,
    Operation.COPY_OBJECT: copy_object,
    Operation.LIST_OBJECTS: list_objects,
    Operation.LIST_OBJECTS_V2: list_objects_v2,
    Operation.LIST_OBJECT_VERSIONS: list_object_versions,
    Operation.CREATE_MULTIPART_UPLOAD: create_multipart_upload,
    Operation.UPLOAD_PART: upload_part,
    Operation.UPLOAD_PART_COPY: upload_part_copy,
    Operation.COMPLETE_MULTIPART_UPLOAD: complete_multipart_upload,
    Operation.ABORT_MULTIPART_UPLOAD: abort_multipart_upload,
    Operation.LIST_PARTS: list_parts,
    Operation.LIST_MULTIPART_UPLOADS: list_multipart_uploads,
    Operation.GET_OBJECT_TAGGING: get_object_tagging,
}
"""One handler per operation `s3proto.route` knows."""
