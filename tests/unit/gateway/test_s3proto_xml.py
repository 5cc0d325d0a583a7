"""The S3 XML documents (atoll.gateway.s3proto): each renderer against hand-written
XML, then through botocore's own S3 response parser (what boto3 will read), and the
two request-body parsers with their limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.handlers
import botocore.session
import pytest
from botocore.parsers import RestXMLParser
from hypothesis import given
from hypothesis import strategies as st

from atoll.gateway import errors
from atoll.gateway import s3proto as p

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
T_MS = 1_795_694_400_123  # 2026-11-26T12:00:00.123Z
T_TEXT = "2026-11-26T12:00:00.123Z"
T_DATETIME = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=UTC)
OWNER = p.Owner("owner-id", "owner")
OWNER_XML = "<ID>owner-id</ID><DisplayName>owner</DisplayName>"

_MODEL = botocore.session.get_session().get_service_model("s3")


def boto_parse(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    response = {"status_code": status, "headers": {}, "body": body}
    shape = _MODEL.operation_model(operation).output_shape
    parsed: dict[str, Any] = RestXMLParser().parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def test_empty_tagging_reads_as_no_tags() -> None:
    body = p.render_empty_tagging()
    assert body.decode() == f"{DECL}<Tagging {NS}><TagSet></TagSet></Tagging>"
    assert boto_parse("GetObjectTagging", body) == {"TagSet": []}


def test_timestamp_format() -> None:
    assert p.format_timestamp(T_MS) == T_TEXT
    assert p.format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert p.format_timestamp(1999) == "1970-01-01T00:00:01.999Z"


def test_escaping() -> None:
    assert p.xml_escape('a&b<c>d"e\rf\x01g\tk\n') == "a&amp;b&lt;c&gt;d&quot;e&#13;f&#x1;g\tk\n"


# -- error document -----------------------------------------------------------------------


def test_error_document() -> None:
    error = errors.NoSuchKey(Key="a<b")
    body = p.render_error(error, resource="/bkt/a<b", request_id="req-1")
    assert body.decode() == (
        f"{DECL}<Error><Code>NoSuchKey</Code>"
        "<Message>The specified key does not exist.</Message><Key>a&lt;b</Key>"
        "<Resource>/bkt/a&lt;b</Resource><RequestId>req-1</RequestId></Error>"
    )
    parsed = boto_parse("GetObject", body, status=404)
    assert parsed["Error"]["Code"] == "NoSuchKey"
    assert parsed["Error"]["Message"] == "The specified key does not exist."
    assert parsed["Error"]["Key"] == "a<b"


# -- ListBuckets, GetBucketLocation -------------------------------------------------------


def test_list_buckets() -> None:
    body = p.render_list_buckets(OWNER, [p.BucketEntry("a", T_MS), p.BucketEntry("b", 0)])
    assert body.decode() == (
        f"{DECL}<ListAllMyBucketsResult {NS}><Owner>{OWNER_XML}</Owner><Buckets>"
        f"<Bucket><Name>a</Name><CreationDate>{T_TEXT}</CreationDate></Bucket>"
        "<Bucket><Name>b</Name><CreationDate>1970-01-01T00:00:00.000Z</CreationDate></Bucket>"
        "</Buckets></ListAllMyBucketsResult>"
    )
    parsed = boto_parse("ListBuckets", body)
    assert parsed["Owner"] == {"ID": "owner-id", "DisplayName": "owner"}
    assert [b["Name"] for b in parsed["Buckets"]] == ["a", "b"]
    assert parsed["Buckets"][0]["CreationDate"] == T_DATETIME


def test_list_buckets_empty() -> None:
    body = p.render_list_buckets(OWNER, [])
    assert b"<Buckets></Buckets>" in body
    assert boto_parse("ListBuckets", body)["Buckets"] == []


@pytest.mark.parametrize(("region", "text"), [("us-east-1", ""), ("eu-west-1", "eu-west-1")])
def test_location(region: str, text: str) -> None:
    body = p.render_location(region)
    assert body.decode() == f"{DECL}<LocationConstraint {NS}>{text}</LocationConstraint>"
    parsed: dict[str, Any] = {}

    class Response:
        status_code = 200
        raw = b""  # only compared with None
        content = body

    botocore.handlers.parse_get_bucket_location(parsed, Response())
    assert parsed["LocationConstraint"] == (text or None)


# -- object listings ----------------------------------------------------------------------

ENTRY = p.ObjectEntry("dir/a b+c", T_MS, "0123abcd", 42, owner=OWNER)


def _page(encoding: str | None, truncated: bool = True) -> p.ListPage:
    return p.ListPage(
        bucket="bkt",
        prefix="dir/",
        delimiter="/",
        max_keys=2,
        is_truncated=truncated,
        contents=[ENTRY],
        common_prefixes=["dir/sub dir/"],
        marker="dir/0 0",
        next_marker="dir/sub dir/" if truncated else None,
        encoding_type=encoding,
    )


def test_list_objects_v1() -> None:
    body = p.render_list_objects(_page(None))
    assert body.decode() == (
        f"{DECL}<ListBucketResult {NS}><Name>bkt</Name><Prefix>dir/</Prefix>"
        "<Marker>dir/0 0</Marker><NextMarker>dir/sub dir/</NextMarker><MaxKeys>2</MaxKeys>"
        "<Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
        f"<Contents><Key>dir/a b+c</Key><LastModified>{T_TEXT}</LastModified>"
        "<ETag>&quot;0123abcd&quot;</ETag><Size>42</Size>"
        f"<Owner>{OWNER_XML}</Owner><StorageClass>STANDARD</StorageClass></Contents>"
        "<CommonPrefixes><Prefix>dir/sub dir/</Prefix></CommonPrefixes></ListBucketResult>"
    )
    parsed = boto_parse("ListObjects", body)
    assert parsed["Contents"] == [
        {
            "Key": "dir/a b+c",
            "LastModified": T_DATETIME,
            "ETag": '"0123abcd"',
            "Size": 42,
            "Owner": {"ID": "owner-id", "DisplayName": "owner"},
            "StorageClass": "STANDARD",
        }
    ]
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/sub dir/"}]
    assert (parsed["IsTruncated"], parsed["NextMarker"], parsed["MaxKeys"]) == (
        True,
        "dir/sub dir/",
        2,
    )


def test_list_objects_v1_url_encoded_round_trips_through_botocore() -> None:
    body = p.render_list_objects(_page("url"))
    assert b"<Key>dir/a%20b%2Bc</Key>" in body
    assert b"<Marker>dir/0%200</Marker>" in body
    assert b"<NextMarker>dir/sub%20dir/</NextMarker>" in body
    assert b"<Prefix>dir/sub%20dir/</Prefix>" in body
    assert b"<EncodingType>url</EncodingType>" in body
    parsed = boto_parse("ListObjects", body)
    botocore.handlers.decode_list_object(parsed, {"encoding_type_auto_set": True})
    assert parsed["Contents"][0]["Key"] == "dir/a b+c"
    assert parsed["Marker"] == "dir/0 0"
    assert parsed["NextMarker"] == "dir/sub dir/"
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/sub dir/"}]


def test_list_objects_v2() -> None:
    page = _page(None)
    body = p.render_list_objects_v2(page)
    assert body.decode() == (
        f"{DECL}<ListBucketResult {NS}><Name>bkt</Name><Prefix>dir/</Prefix>"
        "<StartAfter>dir/0 0</StartAfter><NextContinuationToken>dir/sub dir/"
        "</NextContinuationToken><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
        "<Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>"
        f"<Contents><Key>dir/a b+c</Key><LastModified>{T_TEXT}</LastModified>"
        "<ETag>&quot;0123abcd&quot;</ETag><Size>42</Size><StorageClass>STANDARD</StorageClass>"
        "</Contents><CommonPrefixes><Prefix>dir/sub dir/</Prefix></CommonPrefixes>"
        "</ListBucketResult>"
    )
    parsed = boto_parse("ListObjectsV2", body)
    assert parsed["KeyCount"] == 2
    assert parsed["NextContinuationToken"] == "dir/sub dir/"
    assert "Owner" not in parsed["Contents"][0]
    with_owner = boto_parse("ListObjectsV2", p.render_list_objects_v2(page, fetch_owner=True))
    assert with_owner["Contents"][0]["Owner"]["ID"] == "owner-id"


def test_list_objects_v2_url_and_continuation() -> None:
    page = p.ListPage("bkt", "", None, 1000, False, [ENTRY], [], continuation_token="t0", encoding_type="url")  # fmt: skip
    body = p.render_list_objects_v2(page)
    assert b"<ContinuationToken>t0</ContinuationToken>" in body
    assert b"NextContinuationToken" not in body
    assert b"StartAfter" not in body
    assert b"Delimiter" not in body
    parsed = boto_parse("ListObjectsV2", body)
    botocore.handlers.decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
    assert parsed["Contents"][0]["Key"] == "dir/a b+c"
    assert parsed["IsTruncated"] is False


def test_list_object_versions_on_unversioned_bucket() -> None:
    page = _page(None, truncated=False)
    body = p.render_list_versions(page)
    assert body.decode() == (
        f"{DECL}<ListVersionsResult {NS}><Name>bkt</Name><Prefix>dir/</Prefix>"
        "<KeyMarker>dir/0 0</KeyMarker><VersionIdMarker></VersionIdMarker>"
        "<MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated>"
        "<Version><Key>dir/a b+c</Key><VersionId>null</VersionId><IsLatest>true</IsLatest>"
        f"<LastModified>{T_TEXT}</LastModified>"
        "<ETag>&quot;0123abcd&quot;</ETag><Size>42</Size>"
        f"<Owner>{OWNER_XML}</Owner><StorageClass>STANDARD</StorageClass></Version>"
        "<CommonPrefixes><Prefix>dir/sub dir/</Prefix></CommonPrefixes></ListVersionsResult>"
    )
    parsed = boto_parse("ListObjectVersions", body)
    assert parsed["Versions"][0]["VersionId"] == "null"
    assert parsed["Versions"][0]["IsLatest"] is True
    assert parsed["Versions"][0]["Key"] == "dir/a b+c"


def test_list_object_versions_truncated_url() -> None:
    body = p.render_list_versions(_page("url"), next_key_marker="dir/a b+c")
    parsed = boto_parse("ListObjectVersions", body)
    botocore.handlers.decode_list_object_versions(parsed, {"encoding_type_auto_set": True})
    assert parsed["NextKeyMarker"] == "dir/a b+c"
    assert parsed["NextVersionIdMarker"] == "null"
    assert parsed["Versions"][0]["Key"] == "dir/a b+c"


# -- multipart -------------------------------------------------------------------------------


def test_initiate_multipart_upload() -> None:
    body = p.render_initiate_multipart_upload("bkt", "a&b", "u-1")
    assert body.decode() == (
        f"{DECL}<InitiateMultipartUploadResult {NS}><Bucket>bkt</Bucket><Key>a&amp;b</Key>"
        "<UploadId>u-1</UploadId></InitiateMultipartUploadResult>"
    )
    parsed = boto_parse("CreateMultipartUpload", body)
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("bkt", "a&b", "u-1")


def test_complete_multipart_upload_result() -> None:
    body = p.render_complete_multipart_upload("http://h/bkt/k", "bkt", "k", "ab-3")
    assert body.decode() == (
        f"{DECL}<CompleteMultipartUploadResult {NS}><Location>http://h/bkt/k</Location>"
        "<Bucket>bkt</Bucket><Key>k</Key><ETag>&quot;ab-3&quot;</ETag></CompleteMultipartUploadResult>"
    )
    assert boto_parse("CompleteMultipartUpload", body)["ETag"] == '"ab-3"'


@pytest.mark.parametrize(
    ("part", "root", "operation", "field"),
    [(False, "CopyObjectResult", "CopyObject", "CopyObjectResult"),
     (True, "CopyPartResult", "UploadPartCopy", "CopyPartResult")],
)  # fmt: skip
def test_copy_results(part: bool, root: str, operation: str, field: str) -> None:
    body = p.render_copy_result('"e"', T_MS, part=part)
    assert body.decode() == (
        f"{DECL}<{root} {NS}><LastModified>{T_TEXT}</LastModified><ETag>&quot;e&quot;</ETag></{root}>"
    )
    assert boto_parse(operation, body)[field] == {"LastModified": T_DATETIME, "ETag": '"e"'}


def test_list_parts() -> None:
    page = p.PartsPage(
        "bkt", "k", "u-1", OWNER, 0, 2, 2, True,
        [p.PartEntry(1, T_MS, "e1", 5242880), p.PartEntry(2, T_MS, "e2", 7)],
    )  # fmt: skip
    body = p.render_list_parts(page)
    assert body.decode() == (
        f"{DECL}<ListPartsResult {NS}><Bucket>bkt</Bucket><Key>k</Key><UploadId>u-1</UploadId>"
        f"<Initiator>{OWNER_XML}</Initiator><Owner>{OWNER_XML}</Owner>"
        "<StorageClass>STANDARD</StorageClass><PartNumberMarker>0</PartNumberMarker>"
        "<NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>2</MaxParts>"
        "<IsTruncated>true</IsTruncated>"
        f"<Part><PartNumber>1</PartNumber><LastModified>{T_TEXT}</LastModified><ETag>&quot;e1&quot;</ETag>"
        "<Size>5242880</Size></Part>"
        f"<Part><PartNumber>2</PartNumber><LastModified>{T_TEXT}</LastModified><ETag>&quot;e2&quot;</ETag>"
        "<Size>7</Size></Part></ListPartsResult>"
    )
    parsed = boto_parse("ListParts", body)
    assert [(x["PartNumber"], x["ETag"], x["Size"]) for x in parsed["Parts"]] == [
        (1, '"e1"', 5242880),
        (2, '"e2"', 7),
    ]
    assert (parsed["NextPartNumberMarker"], parsed["IsTruncated"]) == (2, True)


def test_list_multipart_uploads() -> None:
    page = p.UploadsPage(
        bucket="bkt", prefix="", delimiter=None, key_marker="", upload_id_marker="",
        next_key_marker="k 1", next_upload_id_marker="u-1", max_uploads=1000,
        is_truncated=False, uploads=[p.UploadEntry("k 1", "u-1", T_MS, OWNER)],
        common_prefixes=[],
    )  # fmt: skip
    body = p.render_list_multipart_uploads(page)
    assert body.decode() == (
        f"{DECL}<ListMultipartUploadsResult {NS}><Bucket>bkt</Bucket><KeyMarker></KeyMarker>"
        "<UploadIdMarker></UploadIdMarker><NextKeyMarker>k 1</NextKeyMarker>"
        "<NextUploadIdMarker>u-1</NextUploadIdMarker><Prefix></Prefix>"
        "<MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>"
        f"<Upload><Key>k 1</Key><UploadId>u-1</UploadId><Initiator>{OWNER_XML}</Initiator>"
        f"<Owner>{OWNER_XML}</Owner><StorageClass>STANDARD</StorageClass>"
        f"<Initiated>{T_TEXT}</Initiated></Upload></ListMultipartUploadsResult>"
    )
    parsed = boto_parse("ListMultipartUploads", body)
    assert parsed["Uploads"][0]["Key"] == "k 1"
    assert parsed["Uploads"][0]["Initiated"] == T_DATETIME


# -- DeleteObjects -------------------------------------------------------------------------


def test_delete_result() -> None:
    failure = p.DeleteFailure("b", "AccessDenied", "Access Denied")
    body = p.render_delete_result([("a", None), ("c", "null")], [failure])
    assert body.decode() == (
        f"{DECL}<DeleteResult {NS}><Deleted><Key>a</Key></Deleted>"
        "<Deleted><Key>c</Key><VersionId>null</VersionId></Deleted>"
        "<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        "</DeleteResult>"
    )
    parsed = boto_parse("DeleteObjects", body)
    assert parsed["Deleted"] == [{"Key": "a"}, {"Key": "c", "VersionId": "null"}]
    assert parsed["Errors"] == [{"Key": "b", "Code": "AccessDenied", "Message": "Access Denied"}]
    quiet = p.render_delete_result([("a", None)], [], quiet=True)
    assert quiet.decode() == f"{DECL}<DeleteResult {NS}></DeleteResult>"


def _delete_body(keys: list[str], quiet: str | None = None) -> bytes:
    objects = "".join(f"<Object><Key>{p.xml_escape(k)}</Key></Object>" for k in keys)
    quiet_xml = f"<Quiet>{quiet}</Quiet>" if quiet is not None else ""
    return f'<Delete xmlns="{p.S3_XMLNS}">{quiet_xml}{objects}</Delete>'.encode()


def test_parse_delete() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>'
        b"<Object><Key>a&amp;b</Key></Object>"
        b"<Object><Key>c</Key><VersionId>null</VersionId></Object></Delete>"
    )
    assert p.parse_delete(body) == p.DeleteRequest(True, [("a&b", None), ("c", "null")])
    assert p.parse_delete(_delete_body(["x"])) == p.DeleteRequest(False, [("x", None)])


def test_parse_delete_as_botocore_serialises_it() -> None:
    from botocore.serialize import create_serializer

    serializer = create_serializer("rest-xml")
    request = serializer.serialize_to_request(
        {
            "Bucket": "bkt",
            "Delete": {
                "Objects": [{"Key": "é <x>"}, {"Key": "k", "VersionId": "v"}],
                "Quiet": True,
            },
        },
        _MODEL.operation_model("DeleteObjects"),
    )
    assert p.parse_delete(request["body"]) == p.DeleteRequest(True, [("é <x>", None), ("k", "v")])


def test_parse_delete_limits() -> None:
    assert len(p.parse_delete(_delete_body(["k"] * 1000)).objects) == 1000
    with pytest.raises(errors.MalformedXML):
        p.parse_delete(_delete_body(["k"] * 1001))
    with pytest.raises(errors.KeyTooLongError):
        p.parse_delete(_delete_body(["k" * 1025]))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Delete>",
        b"<Delete></Delete>",
        b"<Delete><Object><Key></Key></Object></Delete>",
        b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
        b"<Other><Object><Key>k</Key></Object></Other>",
        b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
        b"<Delete><Object><Key>k</Key></Object></Delete><Delete/>",
        b"\xff\xfe",
        b'<!DOCTYPE d [<!ENTITY x "y">]><Delete><Object><Key>&x;</Key></Object></Delete>',
        b"<!DOCTYPE Delete><Delete><Object><Key>k</Key></Object></Delete>",
        b"<a>" * 20 + b"</a>" * 20,
        b"<Delete>" + b" " * p.DELETE_BODY_BYTES_MAX + b"</Delete>",
    ],
)
def test_parse_delete_rejects(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        p.parse_delete(body)


def test_billion_laughs_is_refused_before_expansion() -> None:
    entities = "".join(
        f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    )
    body = f'<!DOCTYPE d [<!ENTITY l0 "ha">{entities}]><Delete><Object><Key>&l9;</Key></Object></Delete>'  # fmt: skip
    with pytest.raises(errors.MalformedXML):
        p.parse_delete(body.encode())


# -- CompleteMultipartUpload body -------------------------------------------------------------


def _complete_body(parts: list[tuple[int | str, str]]) -> bytes:
    inner = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts)
    return f"<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>".encode()


def test_parse_complete() -> None:
    body = (
        f'<CompleteMultipartUpload xmlns="{p.S3_XMLNS}"><Part><ETag>&quot;e1&quot;</ETag>'
        "<PartNumber>1</PartNumber><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>"
        "<Part><PartNumber> 3 </PartNumber><ETag>e3</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    assert p.parse_complete_multipart_upload(body) == [
        p.CompletedPart(1, "e1"),
        p.CompletedPart(3, "e3"),
    ]


def test_parse_complete_as_botocore_serialises_it() -> None:
    from botocore.serialize import create_serializer

    parts = [{"PartNumber": n, "ETag": f'"e{n}"'} for n in (1, 2, 10)]
    request = create_serializer("rest-xml").serialize_to_request(
        {"Bucket": "b", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": parts}},
        _MODEL.operation_model("CompleteMultipartUpload"),
    )
    assert p.parse_complete_multipart_upload(request["body"]) == [
        p.CompletedPart(n, f"e{n}") for n in (1, 2, 10)
    ]


def test_parse_complete_limits_and_order() -> None:
    many = [(n, "e") for n in range(1, 10_001)]
    assert len(p.parse_complete_multipart_upload(_complete_body(many))) == 10_000
    with pytest.raises(errors.MalformedXML):
        p.parse_complete_multipart_upload(_complete_body([*many, (10_001, "e")]))
    with pytest.raises(errors.InvalidPartOrder):
        p.parse_complete_multipart_upload(_complete_body([(2, "a"), (1, "b")]))
    with pytest.raises(errors.InvalidPartOrder):
        p.parse_complete_multipart_upload(_complete_body([(1, "a"), (1, "b")]))
    with pytest.raises(errors.InvalidArgument):
        p.parse_complete_multipart_upload(_complete_body([(0, "a")]))
    with pytest.raises(errors.InvalidArgument):
        p.parse_complete_multipart_upload(_complete_body([(10_001, "a")]))
    with pytest.raises(errors.InvalidArgument):
        p.parse_complete_multipart_upload(_complete_body([("9" * 5000, "a")]))


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        "<CompleteMultipartUpload><Part><PartNumber>\u00b2</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>".encode(),
        b"<Complete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Complete>",
        b"<!DOCTYPE x><CompleteMultipartUpload/>",
        b"not xml",
    ],
)  # fmt: skip
def test_parse_complete_rejects(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        p.parse_complete_multipart_upload(body)


# -- property: what we render, botocore reads back ---------------------------------------------

_KEYS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=60)


@given(_KEYS, st.sampled_from([None, "url"]))
def test_any_key_survives_listing_and_botocore(key: str, encoding: str | None) -> None:
    if encoding is None and any(ord(c) < 0x20 and c not in "\t\n" for c in key):
        return  # XML 1.0 cannot carry these raw; S3 clients must use encoding-type=url
    if encoding is None and "\r" in key:
        return
    entry = p.ObjectEntry(key, T_MS, "e", 1)
    page = p.ListPage("b", "", None, 1000, False, [entry], [], encoding_type=encoding)
    parsed = boto_parse("ListObjectsV2", p.render_list_objects_v2(page))
    botocore.handlers.decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
    assert parsed["Contents"][0]["Key"] == key


@given(st.lists(_KEYS.filter(lambda k: len(k.encode()) <= 1024), min_size=1, max_size=20))
def test_delete_body_round_trip(keys: list[str]) -> None:
    printable = [k for k in keys if all(ord(c) >= 0x20 or c in "\t\n" for c in k)]
    if not printable:
        return
    assert p.parse_delete(_delete_body(printable)).objects == [(k, None) for k in printable]
