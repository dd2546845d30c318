"""The OpenAPI 3.1 description of the admin API, served at ``GET /openapi.json``."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["openapi"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    descriptions = {
        400: "The request or the manifest is invalid; the message names the file, field and expectation.",
        401: "No bearer token, or not the host's token.",
        404: "No app of that name is deployed.",
        409: "Not possible in the app's current state (no canary, nothing to roll back, first deploy as canary).",
        413: "The manifest is too large.",
        415: "The body is not YAML or JSON.",
        500: "The host failed; the change was not applied.",
    }
    return {str(s): _json_response(descriptions[s], _ref("Error")) for s in (401, *statuses, 500)}


_NAME_PARAMETER: dict[str, Any] = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The app's qualified name, `app/component`, URL-encoded (the slash as `%2F`).",
    "schema": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "example": "image-processor/resizer",
}

_VERSION_REF: dict[str, Any] = {
    "type": "object",
    "required": ["version", "digest"],
    "properties": {
        "version": {"type": "integer", "minimum": 1, "description": "Version id (never reused)."},
        "digest": {"type": "string", "description": "`sha256:` and the hex digest of the module bytes."},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What went wrong, for a person to read."}},
    },
    "App": {
        "type": "object",
        "description": "One deployed component and what it serves.",
        "required": ["name", "route", "host", "version", "digest", "module", "state", "previous", "canary", "updated"],
        "properties": {
            "name": {"type": "string", "description": "`app/component`.", "example": "image-processor/resizer"},
            "route": {"type": "string", "description": "Path prefix.", "example": "/resize"},
            "host": {"type": ["string", "null"], "description": "Host the route is limited to, if any."},
            "version": {"type": "integer", "minimum": 1, "description": "The stable version's id."},
            "digest": {"type": "string", "description": "`sha256:` and the stable module's hex digest."},
            "module": {"type": "string", "description": "The stable version's `moduleURL`."},
            "state": {"type": "string", "enum": ["serving", "degraded"]},
            "previous": {
                "description": "The version `rollback` would return to.",
                "oneOf": [_VERSION_REF, {"type": "null"}],
            },
            "canary": {
                "description": "A version receiving part of the traffic, if any.",
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["version", "digest", "weight", "header"],
                        "properties": {
                            **_VERSION_REF["properties"],
                            "weight": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": 100,
                                "description": "Percentage of requests sent to the canary.",
                            },
                            "header": {
                                "type": ["string", "null"],
                                "description": "`Name: value`: requests carrying it always go to the canary.",
                                "example": "X-Canary: 1",
                            },
                        },
                    },
                    {"type": "null"},
                ],
            },
            "updated": {"type": "number", "description": "When the app last changed (Unix time, seconds)."},
        },
    },
    "DeployResult": {
        "type": "object",
        "description": "What a deploy did to one component of the manifest.",
        "required": ["app", "version", "changed"],
        "properties": {
            "app": {"type": "string", "description": "`app/component`."},
            "version": {"type": "integer", "minimum": 1, "description": "The stable (or canary) version now."},
            "changed": {"type": "boolean", "description": "False if the component was already serving this."},
        },
    },
    "Deploy": {
        "type": "object",
        "description": "The answer to a deploy, sent once it is durable.",
        "required": ["generation", "results"],
        "properties": {
            "generation": {"type": "integer", "minimum": 0, "description": "The state's generation after it."},
            "results": {"type": "array", "items": _ref("DeployResult")},
        },
    },
    "LogEntry": {
        "type": "object",
        "description": "One line the app wrote to stderr (or the host logged about it).",
        "required": ["time", "message"],
        "properties": {
            "time": {"type": "number", "description": "Unix time, seconds."},
            "level": {"type": "string", "example": "warning"},
            "message": {"type": "string"},
        },
    },
}

_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _app_action(summary: str, description: str, *errors: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description,
            "operationId": summary.split()[0].lower(),
            "tags": ["apps"],
            "security": _BEARER,
            "parameters": [_NAME_PARAMETER],
            "responses": {"200": _json_response("The app after the change.", _ref("App")), **_errors(404, *errors)},
        }
    }


_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "operationId": "healthz",
            "tags": ["host"],
            "security": [],
            "responses": {"200": {"description": "The host is up.", "content": {"text/plain": {"schema": {
                "type": "string", "example": "ok\n"}}}}},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "tags": ["host"],
            "security": [],
            "responses": {"200": {
                "description": "Every worker's samples, in the Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "tags": ["host"],
            "security": [],
            "responses": {"200": _json_response("The OpenAPI 3.1 document of the admin API.", {"type": "object"})},
        }
    },
    "/v1/apps": {
        "get": {
            "summary": "List apps",
            "operationId": "listApps",
            "tags": ["apps"],
            "security": _BEARER,
            "responses": {
                "200": _json_response("Every deployed app, sorted by name.", {"type": "array", "items": _ref("App")}),
                **_errors(),
            },
        }
    },
    "/v1/deploy": {
        "post": {
            "summary": "Deploy a manifest",
            "description": (
                "Validates the manifest, fetches and compiles its modules, records the new versions in one "
                "durable transaction and reloads the workers. Components whose spec and digest are unchanged "
                "keep their version. With `canaryWeight` and/or `canaryHeader`, changed components become "
                "canaries and the stable versions keep serving."
            ),
            "operationId": "deploy",
            "tags": ["apps"],
            "security": _BEARER,
            "parameters": [
                {
                    "name": "source",
                    "in": "query",
                    "required": False,
                    "description": "The manifest's name, used in error messages.",
                    "schema": {"type": "string", "default": "manifest.yaml"},
                },
                {
                    "name": "canaryWeight",
                    "in": "query",
                    "required": False,
                    "description": "Deploy as a canary receiving this percentage of requests.",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 100},
                },
                {
                    "name": "canaryHeader",
                    "in": "query",
                    "required": False,
                    "description": "Deploy as a canary; requests with this `Name: value` header always reach it.",
                    "schema": {"type": "string", "example": "X-Canary: 1"},
                },
            ],
            "requestBody": {
                "required": True,
                "description": "An OAM `Application` manifest.",
                "content": {"application/yaml": {"schema": {"type": "string"}}},
            },
            "responses": {
                "200": _json_response("The deploy is durable and being served.", _ref("Deploy")),
                **_errors(400, 409, 413, 415),
            },
        }
    },
    "/v1/apps/{name}": {
        "get": {
            "summary": "Show an app",
            "operationId": "getApp",
            "tags": ["apps"],
            "security": _BEARER,
            "parameters": [_NAME_PARAMETER],
            "responses": {"200": _json_response("The app.", _ref("App")), **_errors(404)},
        },
        "delete": {
            "summary": "Delete an app",
            "description": "Stops serving the app. Its versions stay in the history.",
            "operationId": "deleteApp",
            "tags": ["apps"],
            "security": _BEARER,
            "parameters": [_NAME_PARAMETER],
            "responses": {"204": {"description": "Deleted (durably)."}, **_errors(404)},
        },
    },
    "/v1/apps/{name}/rollback": _app_action(
        "Rollback to the previous version",
        "Swaps the stable and previous versions (rolling back twice returns) and drops any canary.",
        409,
    ),
    "/v1/apps/{name}/promote": _app_action(
        "Promote the canary", "The canary becomes stable; the old stable becomes previous.", 409
    ),
    "/v1/apps/{name}/abort": _app_action("Abort the canary", "Drops the canary; the stable keeps serving.", 409),
    "/v1/apps/{name}/logs": {
        "get": {
            "summary": "Recent log lines of an app",
            "operationId": "appLogs",
            "tags": ["apps"],
            "security": _BEARER,
            "parameters": [
                _NAME_PARAMETER,
                {
                    "name": "tail",
                    "in": "query",
                    "required": False,
                    "description": "How many of the latest entries.",
                    "schema": {"type": "integer", "minimum": 1, "default": 100},
                },
            ],
            "responses": {
                "200": _json_response("Oldest first.", {"type": "array", "items": _ref("LogEntry")}),
                **_errors(404),
            },
        }
    },
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "wasmlet admin API",
        "version": "1",
        "description": (
            "Deploys, inspects and rolls back the apps a wasmlet host serves. Listens on loopback; "
            "every `/v1` call needs `Authorization: Bearer <token>` (the token is in the state "
            "directory's `admin-token` file). Errors are `{\"error\": \"message\"}`."
        ),
    },
    "servers": [{"url": "http://127.0.0.1:9180", "description": "The default admin listener (`--admin-listen`)."}],
    "tags": [{"name": "host"}, {"name": "apps"}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token in `<state dir>/admin-token`.",
            }
        },
    },
}


def openapi() -> dict[str, Any]:
    """The admin API's OpenAPI 3.1 document (a fresh copy: the caller may change it)."""
    return copy.deepcopy(_DOCUMENT)
