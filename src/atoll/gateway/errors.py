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
