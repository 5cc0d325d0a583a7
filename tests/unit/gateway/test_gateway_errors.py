"""atoll.gateway.errors: the S3 error codes the authentication core raises, with the
HTTP statuses Amazon S3's error responses page gives them, and the registry the XML
layer will read."""

from __future__ import annotations

import pytest

from atoll.base.errors import AtollError
from atoll.gateway import errors

# Code -> status, from the S3 API reference's error code list.
EXPECTED = {
    "AccessDenied": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidAccessKeyId": 403,
    "RequestTimeTooSkewed": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "InvalidDigest": 400,
    "XAmzContentSHA256Mismatch": 400,
    "IncompleteBody": 400,
    "InvalidRequest": 400,
    "InvalidArgument": 400,
    "MalformedTrailerError": 400,
    "MissingContentLength": 411,
    "NotImplemented": 501,
    "InternalError": 500,
}


@pytest.mark.parametrize(("code", "status"), sorted(EXPECTED.items()))
def test_each_code_is_registered_with_its_status(code: str, status: int) -> None:
    cls = errors.ERROR_CLASSES[code]
    error = cls()
    assert (error.code, error.status) == (code, status)
    assert error.message  # a default message
    assert isinstance(error, errors.S3Error)
    assert isinstance(error, AtollError)


def test_messages_and_details() -> None:
    error = errors.AccessDenied("Request has expired", Expires="20260101T000000Z")
    assert str(error) == "AccessDenied: Request has expired"
    assert error.details == {"Expires": "20260101T000000Z"}
    generic = errors.S3Error("NoSuchThing", "It is not there.", 404, {"Key": "k"})
    assert (generic.code, generic.status, generic.details) == ("NoSuchThing", 404, {"Key": "k"})


def test_later_modules_register_their_codes_by_subclassing() -> None:
    class NoSuchKeyForTest(errors.CodedS3Error):
        CODE = "NoSuchKeyForTest"
        STATUS = 404
        MESSAGE = "The specified key does not exist."

    try:
        assert errors.ERROR_CLASSES["NoSuchKeyForTest"] is NoSuchKeyForTest
        assert NoSuchKeyForTest().status == 404
    finally:
        del errors.ERROR_CLASSES["NoSuchKeyForTest"]
