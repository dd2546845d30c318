"""A Spin Python SDK app: a variable, a key-value counter, and an echo.

GET or POST any path: the answer names the `greeting` variable (the manifest's
environment GREETING, or SPIN_VARIABLE_GREETING), the number of requests this
app has counted in its default key-value store so far, and the request's
method, path with query and body, e.g.

    greeting=Hello from the manifest
    count=3
    method=POST
    path=/spin/echo?x=1
    body=ping
"""

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        greeting = variables.get("greeting")
        with key_value.open_default() as store:
            count = int(store.get("count") or b"0") + 1
            store.set("count", str(count).encode())
        head = f"greeting={greeting}\ncount={count}\nmethod={request.method}\npath={request.uri}\nbody="
        return Response(200, {"content-type": "text/plain"}, head.encode() + (request.body or b""))
