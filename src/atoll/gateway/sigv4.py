"""AWS Signature Version 4 for S3: verifying and signing requests. Pure: no I/O, no
clock (the current time is the `now_s` parameter, Unix seconds), no randomness.

Implements, for the S3 service (issue 5 §3):

- header auth (`Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
  Signature=...`), Amazon S3 API reference "Signature Calculations for the
  Authorization Header";
- query auth, i.e. presigned URLs (`X-Amz-Algorithm`, `-Credential`, `-Date`,
  `-Expires` <= 604800, `-SignedHeaders`, `-Signature`), "Authenticating Requests:
  Using Query Parameters";
- the `x-amz-content-sha256` payload modes, and the context (signing key, scope, seed
  signature) that the aws-chunked chunk and trailer signatures are computed from;
  `atoll.gateway.payload` reads and writes those bodies;
- `sign_request`, `sign_request_streaming` and `presign_url`, the same canonical code
  run the other way, for tests and the benchmark's lean client.

The request (`Request`) is what the HTTP layer saw: the method, the path exactly as
sent (still percent-encoded), the query as (name, value) pairs exactly as sent (still
percent-encoded; a name without `=` has the value ""), and the headers with lower-case
names. S3 does not normalise paths or encode them twice: the canonical URI is the path
decoded once and encoded once with S3's rules (RFC 3986 unreserved characters kept,
`/` kept), and the canonical query is each name and value decoded and encoded the same
way (`/` encoded), sorted. Clients differ in how they encode what they send, so when
that canonical form does not verify, the path and query exactly as sent (the query
sorted) are tried too: both decode to the same key and parameters, so a signature
over either authenticates the same request. Query values decode with `+` as a plus
sign, never a space (`decoded_query`), as SigV4 signs them.

Trust order. `verify_header_auth` and `verify_presigned` authenticate the request line
and headers only; the body is authenticated when `atoll.gateway.payload.BodyReader`'s
`finish()` returns.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote_from_bytes, unquote, unquote_to_bytes, urlsplit

from atoll.base.errors import invariant
from atoll.gateway.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    CodedS3Error,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3NotImplemented,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
SERVICE = "s3"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

CLOCK_SKEW_MAX_S = 15 * 60
"""A header-signed request dated further than this from `now_s` is RequestTimeTooSkewed
(a presigned one dated this far in the future is not valid yet)."""
PRESIGN_EXPIRES_MAX_S = 7 * 24 * 3600
ACCESS_KEY_CHARS_MAX = 128
SIGNED_HEADERS_MAX = 64
AUTHORIZATION_CHARS_MAX = 8 * 1024

SecretLookup = Callable[[str], str | None]
"""`lookup_secret(access_key)` -> the secret key, or None if there is no such key."""

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SCOPE_DATE = re.compile(r"\d{8}")
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_UNSIGNED_HEADERS = frozenset(
    {"authorization", "user-agent", "expect", "transfer-encoding", "x-amzn-trace-id"}
)
"""Headers `sign_request` never signs: proxies and HTTP stacks may change them."""


# -- the request ---------------------------------------------------------------------------


class Headers:
    """An immutable HTTP header multi-map: names lower-cased, values in arrival order."""

    __slots__ = ("_by_name", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = tuple((name.lower(), value) for name, value in pairs)
        by_name: dict[str, list[str]] = {}
        for name, value in self._pairs:
            by_name.setdefault(name, []).append(value)
        self._by_name = by_name

    def get(self, name: str) -> str | None:
        """The first value of `name`, or None."""
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self._by_name.get(name.lower(), ()))

    def names(self) -> list[str]:
        return list(self._by_name)

    def replace(self, name: str, value: str | None) -> Headers:
        """A copy with every `name` removed and, unless `value` is None, one appended."""
        name = name.lower()
        kept = [(n, v) for n, v in self._pairs if n != name]
        return Headers(kept if value is None else [*kept, (name, value)])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._pairs == other._pairs

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({list(self._pairs)!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the HTTP layer received it (see the module docstring)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Headers = field(default_factory=Headers)

    @classmethod
    def from_target(
        cls, method: str, target: str, headers: Iterable[tuple[str, str]] = ()
    ) -> Request:
        """From the request-target of the request line (`/bucket/key?uploads`)."""
        path, _, raw_query = target.partition("?")
        return cls(method.upper(), path or "/", parse_query(raw_query), Headers(headers))

    @property
    def host(self) -> str | None:
        return self.headers.get("host")

    @property
    def target(self) -> str:
        """The request-target again: path, then the query pairs as sent."""
        query = "&".join(f"{n}={v}" if v else n for n, v in self.query)
        return f"{self.path}?{query}" if query else self.path


def parse_query(raw_query: str) -> tuple[tuple[str, str], ...]:
    """`a=1&b&c=` -> (("a", "1"), ("b", ""), ("c", "")), still percent-encoded."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return tuple(pairs)


def decoded_query(request: Request) -> list[tuple[str, str]]:
    """The query pairs percent-decoded as SigV4 reads them: `+` stays a plus sign."""
    return [(unquote(n), unquote(v)) for n, v in request.query]


def stored_content_encoding(value: str | None) -> str | None:
    """A request's Content-Encoding without `aws-chunked`, which describes the transfer
    and is not stored with the object; None when nothing is left."""
    if value is None:
        return None
    kept = [c.strip() for c in value.split(",") if c.strip() and c.strip() != "aws-chunked"]
    return ",".join(kept) or None


# -- canonical forms -----------------------------------------------------------------------


def uri_encode(data: str | bytes, *, keep_slash: bool) -> str:
    """SigV4's UriEncode: every byte but A-Z a-z 0-9 - _ . ~ (and `/` in paths) as %XX
    with upper-case hex digits; text is UTF-8 first."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return quote_from_bytes(raw, safe="-_.~/" if keep_slash else "-_.~")


def _recode(raw: str, *, keep_slash: bool) -> str:
    """`raw` percent-decoded once and encoded again; text of unreserved characters
    only (most keys and parameters) is its own canonical form."""
    if (_PLAIN_PATH if keep_slash else _PLAIN).fullmatch(raw):
        return raw
    return uri_encode(unquote_to_bytes(raw), keep_slash=keep_slash)


def canonical_uri(raw_path: str) -> str:
    """The path decoded once and encoded once, never normalised (S3's rule)."""
    return _recode(raw_path, keep_slash=True) or "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Each raw name and value decoded and encoded again, sorted by name then value."""
    encoded = sorted((_recode(n, keep_slash=False), _recode(v, keep_slash=False)) for n, v in pairs)
    return "&".join(f"{n}={v}" for n, v in encoded)


def _raw_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def _trim(value: str) -> str:
    # Trimall: strip, and runs of white space become one space.
    return " ".join(value.split())


def canonical_headers(headers: Headers, signed_names: Iterable[str]) -> str:
    """`name:value\\n` for each signed header in the order given; several values of
    one header are trimmed and joined with commas."""
    return "".join(
        f"{name}:{','.join(_trim(v) for v in headers.get_all(name))}\n" for name in signed_names
    )


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers_block: str,
    signed_names: Iterable[str],
    payload_hash: str,
) -> str:
    return "\n".join([method, uri, query, headers_block, ";".join(signed_names), payload_hash])


@dataclass(frozen=True, slots=True)
class CredentialScope:
    date: str
    region: str
    service: str = SERVICE

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def string_to_sign(amz_date: str, scope: CredentialScope | str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def derive_signing_key(secret_key: str, scope: CredentialScope) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
    "aws4_request")."""
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (scope.date, scope.region, scope.service, TERMINATOR):
        key = hmac.digest(key, part.encode("utf-8"), "sha256")
    return key


def sign(signing_key: bytes, text: str) -> str:
    """The hex HMAC-SHA256 of `text`: a signature."""
    return hmac.new(signing_key, text.encode("utf-8"), "sha256").hexdigest()


class SigningKeyCache:
    """Derived signing keys by (secret, date, region, service), least recently used
    dropped past `entries_max`. A key is valid for one day, so one entry per access
    key and day is the working set; deriving costs four HMACs."""

    def __init__(self, entries_max: int = 1024) -> None:
        invariant(entries_max > 0, f"signing key cache needs a size, got {entries_max}")
        self._entries_max = entries_max
        self._keys: OrderedDict[tuple[str, CredentialScope], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, secret_key: str, scope: CredentialScope) -> bytes:
        entry = (secret_key, scope)
        key = self._keys.get(entry)
        if key is None:
            key = derive_signing_key(secret_key, scope)
            self._keys[entry] = key
            if len(self._keys) > self._entries_max:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(entry)
        return key


DEFAULT_KEY_CACHE = SigningKeyCache()
"""The bounded cache used when a caller passes none. Memoisation only: its contents
never change a result."""


def format_amz_date(now_s: float) -> str:
    return datetime.fromtimestamp(int(now_s), tz=UTC).strftime(_AMZ_DATE_FORMAT)


def parse_amz_date(value: str) -> float | None:
    """Unix seconds of `yyyyMMddTHHmmssZ`, or None if it is not one."""
    if not _AMZ_DATE.fullmatch(value):
        return None
    year, month, day = int(value[0:4]), int(value[4:6]), int(value[6:8])
    hour, minute, second = int(value[9:11]), int(value[11:13]), int(value[13:15])
    try:  # not strptime: it was a third of the cost of verifying a request
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    except ValueError:
        return None


# -- what verification yields --------------------------------------------------------------


class PayloadMode(enum.Enum):
    """What `x-amz-content-sha256` says about the body."""

    SIGNED = "sha256"
    UNSIGNED = UNSIGNED_PAYLOAD
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def chunked(self) -> bool:
        return self.value.startswith("STREAMING-")

    @property
    def signed_chunks(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def trailer(self) -> bool:
        return self.value.endswith("-TRAILER")


_STREAMING_SIGV4A = (
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
)


def payload_mode(value: str) -> PayloadMode:
    """The mode of an `x-amz-content-sha256` value: a hex SHA-256 or one of the
    literals. SigV4a's ECDSA modes are S3NotImplemented; anything else InvalidArgument."""
    if _SHA256_HEX.fullmatch(value):
        return PayloadMode.SIGNED
    if value == PayloadMode.SIGNED.value:
        raise InvalidArgument(_CONTENT_SHA256_VALUES)
    if value in _STREAMING_SIGV4A:
        raise S3NotImplemented(f"x-amz-content-sha256 {value} (SigV4a) is not supported.")
    try:
        return PayloadMode(value)
    except ValueError:
        raise InvalidArgument(_CONTENT_SHA256_VALUES, ArgumentName="x-amz-content-sha256") from None


_CONTENT_SHA256_VALUES = (
    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
    "or a valid sha256 value."
)


@dataclass(frozen=True, slots=True)
class ChunkSigningContext:
    """What chunk and trailer signatures are computed from: the request's signing key,
    date and scope, and its signature, which seeds the chain."""

    signing_key: bytes = field(repr=False)
    amz_date: str
    scope: str
    seed_signature: str

    def chunk_signature(self, previous: str, data_sha256_hex: str) -> str:
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                previous,
                EMPTY_SHA256,
                data_sha256_hex,
            ]
        )
        return sign(self.signing_key, text)

    def trailer_signature(self, previous: str, trailers: Mapping[str, str]) -> str:
        """Over the trailing headers as `name:value\\n` lines, sorted by name."""
        block = "".join(f"{n}:{trailers[n]}\n" for n in sorted(trailers))
        digest = hashlib.sha256(block.encode("utf-8")).hexdigest()
        text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, previous, digest])
        return sign(self.signing_key, text)


@dataclass(frozen=True, slots=True)
class Authenticated:
    """An authenticated request line and headers (the body: `atoll.gateway.payload`)."""

    access_key: str
    presigned: bool
    payload_hash: str
    """The signed `x-amz-content-sha256` value (UNSIGNED-PAYLOAD for presigned URLs)."""
    chunk_context: ChunkSigningContext | None = None
    """For the signed aws-chunked modes: what the chunk signatures chain from."""

    @property
    def payload_mode(self) -> PayloadMode:
        return payload_mode(self.payload_hash)


# -- verification: shared steps ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Credential:
    access_key: str
    scope: CredentialScope


def _parse_credential(value: str, error: type[CodedS3Error]) -> _Credential:
    parts = value.split("/")
    if len(parts) < 5 or not parts[0]:
        raise error(
            "The Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key = "/".join(parts[:-4])
    date, region, service, terminator = parts[-4:]
    if len(access_key) > ACCESS_KEY_CHARS_MAX or not _SCOPE_DATE.fullmatch(date) or not region:
        raise error(f"The Credential is mal-formed: {value[:200]!r}.")
    if service != SERVICE:
        raise error(f'Incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    if terminator != TERMINATOR:
        raise error(f'Incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
    return _Credential(access_key, CredentialScope(date, region, service))


def _check_scope(
    scope: CredentialScope, amz_date: str, region: str | None, error: type[CodedS3Error]
) -> None:
    if scope.date != amz_date[:8]:
        raise error(
            f"Invalid credential date {scope.date!r}. Date is not the same as X-Amz-Date "
            f"{amz_date!r}."
        )
    if region is not None and scope.region != region:
        raise error(f"The region {scope.region!r} is wrong; expecting {region!r}.", Region=region)


def _parse_signed_headers(value: str, error: type[CodedS3Error]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if len(names) > SIGNED_HEADERS_MAX or not all(_HEADER_NAME.fullmatch(n) for n in names):
        raise error(f"SignedHeaders is malformed: {value[:200]!r}.")
    if "host" not in names:
        raise error("SignedHeaders must include host.")
    return names


def _check_signature_format(signature: str, error: type[CodedS3Error]) -> None:
    if not _SIGNATURE.fullmatch(signature):
        raise error("The signature must be 64 lower-case hexadecimal digits.")


def _check_headers_present(headers: Headers, signed: tuple[str, ...]) -> None:
    missing = [n for n in signed if n not in headers]
    if missing:
        raise SignatureDoesNotMatch(f"Signed headers are missing from the request: {missing}.")
    unsigned = sorted(n for n in headers.names() if n.startswith("x-amz-") and n not in signed)
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )


def _lookup(lookup_secret: SecretLookup, access_key: str) -> str:
    secret = lookup_secret(access_key)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return secret


def _canonical_forms(request: Request, query: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """(canonical URI, canonical query) to try, most standard first (module docstring)."""
    standard = (canonical_uri(request.path), canonical_query(query))
    yield standard
    as_sent = (request.path or "/", _raw_query(query))
    if as_sent != standard:
        yield as_sent


def _verify_signature(
    request: Request,
    query: list[tuple[str, str]],
    signed: tuple[str, ...],
    payload_hash: str,
    amz_date: str,
    credential: _Credential,
    signing_key: bytes,
    provided: str,
) -> None:
    headers_block = canonical_headers(request.headers, signed)
    tried: list[tuple[str, str]] = []
    for uri, query_string in _canonical_forms(request, query):
        canonical = canonical_request(
            request.method, uri, query_string, headers_block, signed, payload_hash
        )
        text = string_to_sign(amz_date, credential.scope, canonical)
        if hmac.compare_digest(sign(signing_key, text), provided):
            return
        tried.append((canonical, text))
    canonical, text = tried[0]  # the standard form: what S3 itself would report
    raise SignatureDoesNotMatch(
        AWSAccessKeyId=credential.access_key,
        StringToSign=text,
        SignatureProvided=provided,
        CanonicalRequest=canonical,
    )


# -- header auth -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationFields:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    credential: str
    signed_headers: str
    signature: str


def parse_authorization(value: str) -> AuthorizationFields:
    """Split the header; AuthorizationHeaderMalformed if it is not SigV4's shape, and
    InvalidRequest for another scheme (Signature Version 2 is not supported)."""
    if len(value) > AUTHORIZATION_CHARS_MAX:
        raise AuthorizationHeaderMalformed("The authorization header is too long.")
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        raise InvalidRequest(
            "The authorization mechanism you have provided is not supported. "
            f"Please use {ALGORITHM}."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, text = part.strip().partition("=")
        if not eq or name in fields:
            raise AuthorizationHeaderMalformed(f"The authorization header is malformed: {part!r}.")
        fields[name] = text
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise AuthorizationHeaderMalformed(
            "The authorization header needs exactly Credential, SignedHeaders and Signature."
        )
    return AuthorizationFields(fields["Credential"], fields["SignedHeaders"], fields["Signature"])


def _header_request_time(headers: Headers) -> tuple[str, float]:
    """(the amz-date the string to sign uses, Unix seconds): `x-amz-date`, else `Date`."""
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        when = parse_amz_date(amz_date.strip())
        if when is not None:
            return amz_date.strip(), when
    elif (date := headers.get("date")) is not None:
        try:
            parsed = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None:
            when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
            return format_amz_date(when), when
    raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")


def _check_skew(amz_date: str, request_s: float, now_s: float) -> None:
    if abs(now_s - request_s) > CLOCK_SKEW_MAX_S:
        raise RequestTimeTooSkewed(
            RequestTime=amz_date,
            ServerTime=format_amz_date(now_s),
            MaxAllowedSkewMilliseconds=str(CLOCK_SKEW_MAX_S * 1000),
        )


def verify_header_auth(
    request: Request,
    lookup_secret: SecretLookup,
    now_s: float,
    *,
    region: str | None = None,
    key_cache: SigningKeyCache | None = None,
) -> Authenticated:
    """Authenticate a request signed in its `Authorization` header (which it must have).

    Raises, in this order of checks: InvalidRequest (another scheme, or no
    `x-amz-content-sha256`), AuthorizationHeaderMalformed, InvalidArgument (a bad
    `x-amz-content-sha256`), AccessDenied (no valid date; unsigned `x-amz-*` headers),
    RequestTimeTooSkewed, InvalidAccessKeyId, SignatureDoesNotMatch. `region`, when
    given, is the only region accepted in the credential scope.
    """
    fields = parse_authorization(request.headers.get("authorization") or "")
    credential = _parse_credential(fields.credential, AuthorizationHeaderMalformed)
    signed = _parse_signed_headers(fields.signed_headers, AuthorizationHeaderMalformed)
    _check_signature_format(fields.signature, AuthorizationHeaderMalformed)
    payload_hash = request.headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    mode = payload_mode(payload_hash)
    amz_date, request_s = _header_request_time(request.headers)
    _check_scope(credential.scope, amz_date, region, AuthorizationHeaderMalformed)
    _check_headers_present(request.headers, signed)
    _check_skew(amz_date, request_s, now_s)
    secret = _lookup(lookup_secret, credential.access_key)
    key = (key_cache or DEFAULT_KEY_CACHE).get(secret, credential.scope)
    _verify_signature(
        request,
        list(request.query),
        signed,
        payload_hash,
        amz_date,
        credential,
        key,
        fields.signature,
    )
    context = None
    if mode.signed_chunks:
        context = ChunkSigningContext(key, amz_date, str(credential.scope), fields.signature)
    return Authenticated(credential.access_key, False, payload_hash, context)


# -- query auth (presigned URLs) -------------------------------------------------------------


def _presign_params(query: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The decoded `X-Amz-*` auth parameters; AuthorizationQueryParametersError if one
    is missing or repeated."""
    params: dict[str, str] = {}
    for raw_name, raw_value in query:
        name = unquote(raw_name)
        if name in _PRESIGN_PARAMS or name == "X-Amz-Content-Sha256":
            if name in params:
                raise AuthorizationQueryParametersError(f"{name} appears more than once.")
            params[name] = unquote(raw_value)
    if not all(name in params for name in _PRESIGN_PARAMS):
        raise AuthorizationQueryParametersError(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthorizationQueryParametersError(f'X-Amz-Algorithm only supports "{ALGORITHM}".')
    return params


def _presign_time(params: Mapping[str, str]) -> tuple[str, float, int]:
    """(X-Amz-Date, its Unix seconds, X-Amz-Expires)."""
    amz_date = params["X-Amz-Date"]
    request_s = parse_amz_date(amz_date)
    if request_s is None:
        raise AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"."
        )
    expires = params["X-Amz-Expires"]
    if not expires.isascii() or not expires.isdigit() or len(expires) > 10:
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number.")
    expires_s = int(expires)
    if expires_s > PRESIGN_EXPIRES_MAX_S:
        raise AuthorizationQueryParametersError(
            f"X-Amz-Expires must be less than a week (in seconds) that is {PRESIGN_EXPIRES_MAX_S}."
        )
    return amz_date, request_s, expires_s


def _check_presign_window(amz_date: str, request_s: float, expires_s: int, now_s: float) -> None:
    if now_s + CLOCK_SKEW_MAX_S < request_s:
        raise AccessDenied("Request is not valid yet", ServerTime=format_amz_date(now_s))
    if now_s > request_s + expires_s:
        raise AccessDenied(
            "Request has expired",
            **{
                "X-Amz-Expires": str(expires_s),
                "Expires": format_amz_date(request_s + expires_s),
                "ServerTime": format_amz_date(now_s),
            },
        )


def verify_presigned(
    request: Request,
    lookup_secret: SecretLookup,
    now_s: float,
    *,
    region: str | None = None,
    key_cache: SigningKeyCache | None = None,
) -> Authenticated:
    """Authenticate a presigned URL (query auth).

    Raises AuthorizationQueryParametersError (missing, repeated or malformed `X-Amz-*`
    parameters, `X-Amz-Expires` over a week), AccessDenied ("Request has expired",
    "Request is not valid yet", unsigned `x-amz-*` headers), InvalidAccessKeyId,
    SignatureDoesNotMatch. The payload hash is `X-Amz-Content-Sha256` from the query if
    the URL carries one, else UNSIGNED-PAYLOAD.
    """
    params = _presign_params(request.query)
    error = AuthorizationQueryParametersError
    credential = _parse_credential(params["X-Amz-Credential"], error)
    signed = _parse_signed_headers(params["X-Amz-SignedHeaders"], error)
    _check_signature_format(params["X-Amz-Signature"], error)
    amz_date, request_s, expires_s = _presign_time(params)
    _check_scope(credential.scope, amz_date, region, error)
    payload_hash = params.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD)
    if payload_mode(payload_hash).chunked:
        raise InvalidRequest("A presigned URL cannot carry an aws-chunked body.")
    _check_presign_window(amz_date, request_s, expires_s, now_s)
    _check_headers_present(request.headers, signed)
    secret = _lookup(lookup_secret, credential.access_key)
    key = (key_cache or DEFAULT_KEY_CACHE).get(secret, credential.scope)
    query = [(n, v) for n, v in request.query if unquote(n) != "X-Amz-Signature"]
    _verify_signature(
        request, query, signed, payload_hash, amz_date, credential, key, params["X-Amz-Signature"]
    )
    return Authenticated(credential.access_key, True, payload_hash)


def authenticate(
    request: Request,
    lookup_secret: SecretLookup,
    now_s: float,
    *,
    region: str | None = None,
    key_cache: SigningKeyCache | None = None,
) -> Authenticated | None:
    """Header auth, query auth, or None for an anonymous request. Both at once is
    InvalidArgument; Signature Version 2 (either form) is InvalidRequest."""
    names = {unquote(n) for n, _ in request.query}
    by_header = "authorization" in request.headers
    by_query = bool(names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
    if by_header and by_query:
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified"
        )
    if by_header:
        return verify_header_auth(request, lookup_secret, now_s, region=region, key_cache=key_cache)
    if by_query:
        return verify_presigned(request, lookup_secret, now_s, region=region, key_cache=key_cache)
    if {"AWSAccessKeyId", "Signature"} <= names:
        raise InvalidRequest(
            "The authorization mechanism you have provided is not supported. "
            f"Please use {ALGORITHM}."
        )
    return None


# -- signing ---------------------------------------------------------------------------------


def sign_request(
    request: Request,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now_s: float,
    payload_hash: str = UNSIGNED_PAYLOAD,
    key_cache: SigningKeyCache | None = None,
) -> Request:
    """`request` with `x-amz-date`, `x-amz-content-sha256` and `Authorization` set,
    signing every header it has (it must have `host`) but those in `_UNSIGNED_HEADERS`.
    `payload_hash` is the body's hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode."""
    return sign_request_streaming(
        request,
        access_key=access_key,
        secret_key=secret_key,
        region=region,
        now_s=now_s,
        payload_hash=payload_hash,
        key_cache=key_cache,
    )[0]


def sign_request_streaming(
    request: Request,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now_s: float,
    payload_hash: str,
    key_cache: SigningKeyCache | None = None,
) -> tuple[Request, ChunkSigningContext]:
    """As `sign_request`, also returning the context an `AwsChunkedEncoder` signs the
    body's chunks with (seeded by this request's signature)."""
    invariant("host" in request.headers, "a request to sign needs a host header")
    amz_date = format_amz_date(now_s)
    headers = (
        request.headers.replace("authorization", None)
        .replace("x-amz-date", amz_date)
        .replace("x-amz-content-sha256", payload_hash)
    )
    signed = tuple(sorted(n for n in headers.names() if n not in _UNSIGNED_HEADERS))
    scope = CredentialScope(amz_date[:8], region)
    canonical = canonical_request(
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query),
        canonical_headers(headers, signed),
        signed,
        payload_hash,
    )
    key = (key_cache or DEFAULT_KEY_CACHE).get(secret_key, scope)
    signature = sign(key, string_to_sign(amz_date, scope, canonical))
    authorization = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, "
        f"Signature={signature}"
    )
    signed_request = replace(request, headers=headers.replace("authorization", authorization))
    return signed_request, ChunkSigningContext(key, amz_date, str(scope), signature)


def presign_url(
    *,
    method: str,
    endpoint: str,
    path: str,
    access_key: str,
    secret_key: str,
    region: str,
    now_s: float,
    expires_s: int = 3600,
    query: Iterable[tuple[str, str]] = (),
    headers: Iterable[tuple[str, str]] = (),
    key_cache: SigningKeyCache | None = None,
) -> str:
    """A presigned URL: `endpoint` (`http://host:port`), then `path` and `query` as
    they will be sent (percent-encoded, see `uri_encode`), then the auth parameters.
    `headers` are extra headers the request will carry, signed with `host`."""
    invariant(0 < expires_s <= PRESIGN_EXPIRES_MAX_S, f"X-Amz-Expires {expires_s} out of range")
    base = endpoint.rstrip("/")
    signing_headers = Headers([*headers, ("host", urlsplit(base).netloc)])
    signed = tuple(sorted(signing_headers.names()))
    amz_date = format_amz_date(now_s)
    scope = CredentialScope(amz_date[:8], region)
    params = [
        *query,
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", uri_encode(f"{access_key}/{scope}", keep_slash=False)),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires_s)),
        ("X-Amz-SignedHeaders", uri_encode(";".join(signed), keep_slash=False)),
    ]
    canonical = canonical_request(
        method.upper(),
        canonical_uri(path),
        canonical_query(params),
        canonical_headers(signing_headers, signed),
        signed,
        UNSIGNED_PAYLOAD,
    )
    key = (key_cache or DEFAULT_KEY_CACHE).get(secret_key, scope)
    signature = sign(key, string_to_sign(amz_date, scope, canonical))
    query_string = "&".join(f"{n}={v}" for n, v in params)
    return f"{base}{path}?{query_string}&X-Amz-Signature={signature}"
