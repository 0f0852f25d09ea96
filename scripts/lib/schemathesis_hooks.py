"""Schemathesis hooks for scripts/lib/schemathesis.sh.

`positive_data_acceptance` expects a schema-valid request to succeed. Three of
Campus's 400s answer schema-valid writes because of rows a schema cannot
describe: a value of a field the document marks `x-unique` that another row
already has (DRF's `... with this ... already exists.`), the id of a related
row that does not exist in the caller's organization (`Invalid pk "N" - object
does not exist.`), and a change that would leave the organization without an
active admin. The check below is the built-in one, except that it lets through
a 400 whose every error is one of those, on a field the document declares as
such; any other 400 to valid data still fails it.
"""

import ast
import re
import threading

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# Hypothesis describes a filtered strategy by parsing its source with
# ast.parse. CPython 3.11 (3.11.7 here) counts the depth of that parse's tree
# conversion in interpreter-wide state (see CPython gh-106905), so two workers
# parsing at once can fail an operation with "AST constructor recursion depth
# mismatch", a tool error, not a finding: one parse at a time.
_parse = ast.parse
_parse_lock = threading.Lock()


def _serialized_parse(*args, **kwargs):
    with _parse_lock:
        return _parse(*args, **kwargs)


ast.parse = _serialized_parse

UNIQUE = re.compile(r"^(A user with that username|.+ with this .+) already exists\.$")
MISSING_PK = re.compile(r'^Invalid pk "-?[0-9]+" - object does not exist\.$')
LAST_ADMIN = "An organization must keep at least one active admin."


def _resolve(document, schema):
    while isinstance(schema, dict) and "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _body_properties(case):
    document = case.operation.schema.raw_schema
    body = case.operation.definition.raw.get("requestBody") or {}
    schema = _resolve(document, body.get("content", {}).get("application/json", {}).get("schema"))
    properties = (schema or {}).get("properties", {})
    # A property may be a `$ref` with keywords beside it (`x-unique`): keep both.
    return {
        name: {**_resolve(document, p), **{k: v for k, v in p.items() if k != "$ref"}}
        for name, p in properties.items()
    }


def _state_dependent(case, body):
    if not isinstance(body, dict) or not body:
        return False
    if body == {"detail": LAST_ADMIN}:
        return case.path.startswith("/api/users/")
    properties = _body_properties(case)
    for field, messages in body.items():
        declared = properties.get(field, {})
        for message in messages if isinstance(messages, list) else [messages]:
            if not isinstance(message, str):
                return False
            if UNIQUE.match(message) and "x-unique" in declared:
                continue
            # A related row, written as its id (`department_id`).
            if MISSING_PK.match(message) and field.endswith("_id") and declared.get("format") == "int64":
                continue
            return False
    return True


@schemathesis.check
def positive_data_acceptance_but_state(ctx, response, case):
    """`positive_data_acceptance`, less the 400s that depend on other rows (see the module)."""
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        if _state_dependent(case, body):
            return None
    return positive_data_acceptance(ctx, response, case)
