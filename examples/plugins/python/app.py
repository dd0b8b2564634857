"""Request-signature check: the client signs `METHOD\\nPATH\\nBODY` with
HMAC-SHA256 under a shared key and sends the hex digest in a header. A good
signature names the consumer (property `consumer`, header `x-consumer`); a
missing or wrong one is answered with 401.

The same plugin exists in Rust, JavaScript and C beside this one.
"""

# Every module is imported here, at the top: componentize-py snapshots the
# interpreter after importing this file and the plugin cannot import later.
import hashlib
import hmac
import json

from componentize_py_types import Err
from wit_world.exports import filter
from wit_world.imports import log, secrets, types

FIELDS = ("secret", "consumer", "header")
REQUIRED = ("secret", "consumer")
DEFAULT_HEADER = "x-signature"

# Run the HMAC code once now: `hmac` imports `warnings` on first use, and a
# module first imported while serving a request is not in the snapshot.
hmac.compare_digest(hmac.new(b"warm-up", b"", hashlib.sha256).hexdigest().encode(), b"")


class Handler(filter.Handler):
    """The signature check, configured for one route."""

    def __init__(self, secret: str, consumer: str, header: str) -> None:
        # Name of the secret holding the signing key.
        self.secret = secret
        # Who a correctly signed request comes from.
        self.consumer = consumer
        # Header carrying the signature.
        self.header = header

    @classmethod
    def configure(cls, config: str) -> "Handler":
        try:
            settings = json.loads(config)
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        if not isinstance(settings, dict):
            raise Err("config must be a table")
        for field, value in settings.items():
            if field not in FIELDS:
                raise Err(f"unknown field `{field}`, expected one of `secret`, `consumer`, `header`")
            if not isinstance(value, str):
                raise Err(f"invalid type for field `{field}`: expected a string")
        for field in REQUIRED:
            if field not in settings:
                raise Err(f"missing field `{field}`")
        return cls(settings["secret"], settings["consumer"], settings.get("header", DEFAULT_HEADER))

    def interests(self) -> types.Interests:
        return types.Interests(
            on_request=True,
            request_body=True,
            on_response=False,
            response_body=False,
            response_chunks=False,
        )

    def on_request(self, request: types.Request) -> types.RequestAction:
        presented = request.header(self.header)
        if presented is None:
            return unauthorized("missing signature")
        try:
            key = secrets.get(self.secret).encode()
        except Err as e:
            log.log(log.Level.ERROR, f"secret {self.secret!r}: {describe(e.value)}")
            return json_reply(500, b'{"error":"signing key unavailable"}')
        message = b"\n".join([request.method().encode(), request.path().encode(), request.body() or b""])
        expected = hmac.new(key, message, hashlib.sha256).hexdigest().encode()
        # Bytes, so that a non-ASCII header value compares unequal instead of raising.
        if not hmac.compare_digest(presented.strip().lower().encode(), expected):
            return unauthorized("invalid signature")
        request.set_property("consumer", self.consumer)
        try:
            request.set_header("x-consumer", self.consumer)
        except Err as e:
            log.log(log.Level.WARN, f"x-consumer: {describe(e.value)}")
        return types.RequestAction_Continue()

    def on_response(self, response: types.Response) -> None:
        pass

    def on_response_chunk(self, chunk: bytes, end: bool) -> bytes:
        return chunk


def unauthorized(error: str) -> types.RequestAction:
    return json_reply(401, json.dumps({"error": error}, separators=(",", ":")).encode())


def json_reply(status: int, body: bytes) -> types.RequestAction:
    return types.RequestAction_Respond(types.Reply(status, [("content-type", "application/json")], body))


def describe(error: types.Error) -> str:
    """A host error as text, e.g. `not granted: secret "x"`."""
    if isinstance(error, types.Error_NotGranted):
        return f"not granted: {error.value}"
    if isinstance(error, types.Error_Invalid):
        return f"invalid: {error.value}"
    return f"failed: {error.value}"
