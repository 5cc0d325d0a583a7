"""Expected failures of the S3 gateway, as S3 error codes (shared/STYLE.md §7). Pure.

`S3Error(code, message, status)` is the root: every failure the gateway answers with an
S3 error document is one. The codes this package raises are subclasses with a fixed
`CODE`, HTTP `STATUS` and default `MESSAGE` (the wording follows Amazon S3's error
responses page), so a handler raises `SignatureDoesNotMatch()` or
`AccessDenied("Request has expired", Expires=...)`. Keyword arguments become `details`:
extra elements of the error document (S3 sends, for example, `StringToSign` with
SignatureDoesNotMatch and `ServerTime` with RequestTimeTooSkewed). Every subclass with
its own `CODE` is registered in `ERROR_CLASSES`, the table the XML layer and its
completeness test read; later modules add their codes (NoSuchKey, ...) the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from atoll.base.errors import AtollError

ERROR_CLASSES: dict[str, type[CodedS3Error]] = {}
"""S3 error code -> the class that raises it, filled as subclasses are defined."""


class S3Error(AtollError):
    """A failure answered with an S3 error document: `code`, `message`, HTTP `status`,
    and `details` (element name -> text) for the extra elements S3 includes."""

    CODE: ClassVar[str] = "InternalError"
    STATUS: ClassVar[int] = 500
    MESSAGE: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init__(
        self, code: str, message: str, status: int, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details: dict[str, str] = dict(details or {})


class CodedS3Error(S3Error):
    """Base of the errors whose code and status are fixed by the class."""

    def __init__(self, message: str | None = None, **details: str) -> None:
        super().__init__(self.CODE, message or self.MESSAGE, self.STATUS, details)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "CODE" in cls.__dict__:
            ERROR_CLASSES[cls.CODE] = cls


class InternalError(CodedS3Error):
    CODE = "InternalError"
    STATUS = 500
    MESSAGE = "We encountered an internal error. Please try again."


# -- authentication (issue 5 §3) -----------------------------------------------------------


class AccessDenied(CodedS3Error):
    CODE = "AccessDenied"
    STATUS = 403
    MESSAGE = "Access Denied"


class SignatureDoesNotMatch(CodedS3Error):
    CODE = "SignatureDoesNotMatch"
    STATUS = 403
    MESSAGE = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class InvalidAccessKeyId(CodedS3Error):
    CODE = "InvalidAccessKeyId"
    STATUS = 403
    MESSAGE = "The AWS Access Key Id you provided does not exist in our records."


class RequestTimeTooSkewed(CodedS3Error):
    CODE = "RequestTimeTooSkewed"
    STATUS = 403
    MESSAGE = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(CodedS3Error):
    CODE = "AuthorizationHeaderMalformed"
    STATUS = 400
    MESSAGE = "The authorization header you provided is invalid."


class AuthorizationQueryParametersError(CodedS3Error):
    CODE = "AuthorizationQueryParametersError"
    STATUS = 400
    MESSAGE = "Error parsing the X-Amz-Credential parameter."


# -- request bodies and their digests ----------------------------------------------------


class BadDigest(CodedS3Error):
    CODE = "BadDigest"
    STATUS = 400
    MESSAGE = "The Content-MD5 you specified did not match what we received."


class InvalidDigest(CodedS3Error):
    CODE = "InvalidDigest"
    STATUS = 400
    MESSAGE = "The Content-MD5 you specified is not valid."


class XAmzContentSHA256Mismatch(CodedS3Error):
    CODE = "XAmzContentSHA256Mismatch"
    STATUS = 400
    MESSAGE = "The provided 'x-amz-content-sha256' header does not match what was computed."


class IncompleteBody(CodedS3Error):
    CODE = "IncompleteBody"
    STATUS = 400
    MESSAGE = "You did not provide the number of bytes specified by the Content-Length HTTP header."


class MalformedTrailerError(CodedS3Error):
    CODE = "MalformedTrailerError"
    STATUS = 400
    MESSAGE = (
        "The request contained trailing data that was not well-formed or did not conform "
        "to our published schema."
    )


class MissingContentLength(CodedS3Error):
    CODE = "MissingContentLength"
    STATUS = 411
    MESSAGE = "You must provide the Content-Length HTTP header."


# -- general -----------------------------------------------------------------------------


class InvalidRequest(CodedS3Error):
    CODE = "InvalidRequest"
    STATUS = 400
    MESSAGE = "Invalid Request"


class InvalidArgument(CodedS3Error):
    CODE = "InvalidArgument"
    STATUS = 400
    MESSAGE = "Invalid Argument"


class S3NotImplemented(CodedS3Error):
    """S3's NotImplemented (prefixed so as not to shadow the built-in constant)."""

    CODE = "NotImplemented"
    STATUS = 501
    MESSAGE = "A header you provided implies functionality that is not implemented."


# -- the S3 API: routing, ranges, conditions, XML bodies (atoll.gateway.s3proto) ---------


class MethodNotAllowed(CodedS3Error):
    CODE = "MethodNotAllowed"
    STATUS = 405
    MESSAGE = "The specified method is not allowed against this resource."


class InvalidURI(CodedS3Error):
    CODE = "InvalidURI"
    STATUS = 400
    MESSAGE = "Couldn't parse the specified URI."


class KeyTooLongError(CodedS3Error):
    """S3's KeyTooLong (named so as not to clash with `atoll.objects.errors.KeyTooLong`)."""

    CODE = "KeyTooLong"
    STATUS = 400
    MESSAGE = "Your key is too long."


class InvalidBucketName(CodedS3Error):
    CODE = "InvalidBucketName"
    STATUS = 400
    MESSAGE = "The specified bucket is not valid."


class NoSuchBucket(CodedS3Error):
    CODE = "NoSuchBucket"
    STATUS = 404
    MESSAGE = "The specified bucket does not exist."


class NoSuchKey(CodedS3Error):
    CODE = "NoSuchKey"
    STATUS = 404
    MESSAGE = "The specified key does not exist."


class NoSuchUpload(CodedS3Error):
    CODE = "NoSuchUpload"
    STATUS = 404
    MESSAGE = (
        "The specified multipart upload does not exist. The upload ID might be invalid, "
        "or the multipart upload might have been aborted or completed."
    )


class BucketAlreadyOwnedByYou(CodedS3Error):
    CODE = "BucketAlreadyOwnedByYou"
    STATUS = 409
    MESSAGE = "Your previous request to create the named bucket succeeded and you already own it."


class BucketNotEmpty(CodedS3Error):
    CODE = "BucketNotEmpty"
    STATUS = 409
    MESSAGE = "The bucket you tried to delete is not empty."


class InvalidRange(CodedS3Error):
    CODE = "InvalidRange"
    STATUS = 416
    MESSAGE = "The requested range is not satisfiable"


class PreconditionFailed(CodedS3Error):
    CODE = "PreconditionFailed"
    STATUS = 412
    MESSAGE = "At least one of the pre-conditions you specified did not hold"


class MalformedXML(CodedS3Error):
    CODE = "MalformedXML"
    STATUS = 400
    MESSAGE = (
        "The XML you provided was not well-formed or did not validate against our published schema."
    )


class InvalidPart(CodedS3Error):
    CODE = "InvalidPart"
    STATUS = 400
    MESSAGE = (
        "One or more of the specified parts could not be found. The part might not have "
        "been uploaded, or the specified entity tag might not have matched the part's "
        "entity tag."
    )


class InvalidPartOrder(CodedS3Error):
    CODE = "InvalidPartOrder"
    STATUS = 400
    MESSAGE = "The list of parts was not in ascending order. Parts must be ordered by part number."


class EntityTooSmall(CodedS3Error):
    CODE = "EntityTooSmall"
    STATUS = 400
    MESSAGE = "Your proposed upload is smaller than the minimum allowed object size."


class EntityTooLarge(CodedS3Error):
    CODE = "EntityTooLarge"
    STATUS = 400
    MESSAGE = "Your proposed upload exceeds the maximum allowed object size."


class InvalidStorageClass(CodedS3Error):
    CODE = "InvalidStorageClass"
    STATUS = 400
    MESSAGE = "The storage class you specified is not valid."


class MetadataTooLarge(CodedS3Error):
    CODE = "MetadataTooLarge"
    STATUS = 400
    MESSAGE = "Your metadata headers exceed the maximum allowed metadata size."


# -- outages -------------------------------------------------------------------------------


class ServiceUnavailable(CodedS3Error):
    """The cluster cannot serve the request now (too few devices reachable for the
    write quorum or a read, no KV leader); the client may retry."""

    CODE = "ServiceUnavailable"
    STATUS = 503
    MESSAGE = "Service is unable to handle request."


class SlowDown(CodedS3Error):
    CODE = "SlowDown"
    STATUS = 503
    MESSAGE = "Please reduce your request rate."
