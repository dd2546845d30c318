"""``ResourceType.host(N)`` ids of the resources defined here (1..99; 100..199 belong to ``_spin``)."""

FIELDS = 1
INCOMING_REQUEST = 2
INCOMING_BODY = 3
OUTGOING_REQUEST = 4
OUTGOING_BODY = 5
REQUEST_OPTIONS = 6
RESPONSE_OUTPARAM = 7
OUTGOING_RESPONSE = 8
INCOMING_RESPONSE = 9
FUTURE_TRAILERS = 10
FUTURE_INCOMING_RESPONSE = 11
INPUT_STREAM = 12
OUTPUT_STREAM = 13
ERROR = 14
POLLABLE = 15
TERMINAL_INPUT = 16
TERMINAL_OUTPUT = 17
# Denied interfaces (wasi:filesystem, wasi:sockets): their resources exist only so a guest can link.
DENIED_FIRST = 40
DENIED_LAST = 99
