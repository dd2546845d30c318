"""Guest ABIs: WAGI (CGI over WASI preview 1)."""

from ._handlers import Handler, Linkers, build_handler
from ._runner import GuestLimits, GuestResult, GuestStats, WagiHandler, check_module
from ._wagi import CgiRequest, CgiResponse, build_argv, build_environment, parse_cgi_response

__all__ = [
    "CgiRequest",
    "CgiResponse",
    "GuestLimits",
    "Handler",
    "Linkers",
    "GuestResult",
    "GuestStats",
    "WagiHandler",
    "build_argv",
    "build_environment",
    "build_handler",
    "check_module",
    "parse_cgi_response",
]
