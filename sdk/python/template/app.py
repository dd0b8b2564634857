"""PLUGIN_NAME: a Weir plugin. It adds `x-PLUGIN_NAME: on` to every request.

The gateway calls `Handler.configure` once for every route that uses the
plugin, with that route's config as JSON, and then calls the methods of the
handler it returned for each request on that route.

Import every module you use here, at the top: componentize-py snapshots the
interpreter after importing this file, and the plugin has no file system to
import from later.
"""

import json

from componentize_py_types import Err
from wit_world.exports import filter
from wit_world.imports import log, types


class Handler(filter.Handler):
    """The plugin, configured for one route."""

    @classmethod
    def configure(cls, config: str) -> "Handler":
        # An `Err(message)` raised here rejects the gateway config with it.
        try:
            settings = json.loads(config)
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        if not isinstance(settings, dict):
            raise Err("config must be a table")
        for field in settings:
            raise Err(f"unknown field `{field}`: PLUGIN_NAME takes no settings")
        return cls()

    def interests(self) -> types.Interests:
        # Which calls the gateway makes, and which bodies it buffers.
        return types.Interests(
            on_request=True,
            request_body=False,
            on_response=False,
            response_body=False,
            response_chunks=False,
        )

    def on_request(self, request: types.Request) -> types.RequestAction:
        # Host calls that return `result<_, error>` raise `Err(error)`.
        try:
            request.set_header("x-PLUGIN_NAME", "on")
        except Err as e:
            log.log(log.Level.WARN, f"could not set x-PLUGIN_NAME: {e.value}")
        # To answer the request instead:
        # return types.RequestAction_Respond(types.Reply(403, [("content-type", "text/plain")], b"no\n"))
        return types.RequestAction_Continue()

    def on_response(self, response: types.Response) -> None:
        pass

    def on_response_chunk(self, chunk: bytes, end: bool) -> bytes:
        return chunk
