"""The OpenAPI 3.1 document of ``/admin/api/`` (served at ``/admin/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ERROR, "Malformed request"),
    "401": _json(_ERROR, "Missing or wrong bearer token"),
    "503": _json(_ERROR, "The admin API is disabled ([admin] api_token is empty)"),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "共治 bot admin API",
        "version": "1",
        "description": "For community staff tools. Every change is written to the audit log; "
        "send `X-Operator: <name>` to say who made it.",
    },
    "servers": [{"url": "/admin/api"}],
    "security": [{"bearer": []}],
    "paths": {
        "/feedback": {
            "get": {
                "summary": "Residents' 留言, in arrival order",
                "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}},
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/FeedbackPage"}, "A page"),
                    **_ERRORS,
                },
            }
        },
        "/feedback/{number}": {
            "get": {
                "summary": "One 留言 with its replies",
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Feedback"}, "The 留言"),
                    "404": _json(_ERROR, "No such 留言"),
                    **_ERRORS,
                },
            }
        },
        "/feedback/{number}/replies": {
            "post": {
                "summary": "Answer a 留言: the resident receives it in WeChat",
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {"text": {"type": "string", "maxLength": 600}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Feedback"}, "Sent and recorded"),
                    "404": _json(_ERROR, "No such 留言"),
                    "409": _json(_ERROR, "WeChat does not allow a reply now (48-hour window)"),
                    "502": _json(_ERROR, "WeChat did not accept the message"),
                    **_ERRORS,
                },
            }
        },
        "/audit": {
            "get": {
                "summary": "Every admin change, oldest first",
                "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 200}},
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/AuditPage"}, "A page"),
                    **_ERRORS,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Feedback": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer"},
                    "openid": {"type": "string"},
                    "text": {"type": "string"},
                    "created_at": {"type": "number"},
                    "replies": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "text": {"type": "string"},
                                "by": {"type": "string"},
                                "at": {"type": "number"},
                            },
                        },
                    },
                },
            },
            "FeedbackPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Feedback"}},
                    "next": {"type": ["integer", "null"]},
                },
            },
            "AuditPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"type": "object"}},
                    "next": {"type": ["string", "null"]},
                },
            },
        },
    },
}
