"""The hello handler in Python: a wasi:http/proxy@0.2.0 component, no Spin SDK.

componentize-py generates the `wit_world` bindings from wit/world.wit at build
time (build.sh) and snapshots the interpreter with this module loaded.
"""

from wit_world import exports
from wit_world.imports.types import Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam
from wit_world.types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:  # the stream is a child of the body: drop it before finishing
            stream.blocking_write_and_flush(b"Hello, world!\n")
        OutgoingBody.finish(body, None)
