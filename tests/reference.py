"""Access to the shared reference material (``../shared/reference``) for tests.

The folder sits next to the repository checkout.  When it is missing, a test
that needs it is skipped on a developer machine and fails in CI
(``CI=true``), so that CI never silently skips the Hub Santé checks.

Tests using these helpers carry ``@pytest.mark.reference``.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every Hub Santé schema has the same non-hierarchical ``$id``
# (``classpath:/json-schema/schema#``): each file is registered under its own
# base URI instead, so that relative ``$ref``s ("RC-DE.schema.json") resolve.
SCHEMA_BASE = "file:///json-schema/"


def reference_dir() -> Path:
    """``../shared/reference`` (or ``$SAS_DESK_REFERENCE``); skips the test
    (fails it in CI) when absent."""
    override = os.environ.get("SAS_DESK_REFERENCE")
    path = Path(override) if override else REPO_ROOT.parent / "shared" / "reference"
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"reference material missing in CI: {path}", pytrace=False)
        pytest.skip(f"reference material not found at {path}")
    return path


def hub_sante_dir() -> Path:
    return reference_dir() / "hub-sante"


def load_example(name: str) -> dict[str, Any]:
    """An official Hub Santé example (``hub-sante/examples/<name>``), parsed."""
    data: dict[str, Any] = json.loads(
        (hub_sante_dir() / "examples" / name).read_text(encoding="utf-8")
    )
    return data


def schema_validator(name: str) -> Draft7Validator:
    """Draft-07 validator (with format checks) for ``hub-sante/schemas/<name>``,
    every other schema of the folder registered so that ``$ref``s resolve."""
    return _validator(hub_sante_dir() / "schemas", name)


def schema_errors(validator: Draft7Validator, instance: Any) -> list[str]:
    """Readable list of validation errors ("path: message"), empty when valid."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


@cache
def _registry(schemas: Path) -> Registry[Any]:
    resources = []
    for file in sorted(schemas.glob("*.json")):
        contents = json.loads(file.read_text(encoding="utf-8"))
        contents.pop("$id", None)
        resource = Resource.from_contents(contents, default_specification=DRAFT7)
        resources.append((SCHEMA_BASE + file.name, resource))
    registry: Registry[Any] = Registry().with_resources(resources)
    return registry.crawl()


@cache
def _validator(schemas: Path, name: str) -> Draft7Validator:
    registry = _registry(schemas)
    root = dict(registry.contents(SCHEMA_BASE + name))
    root["$id"] = SCHEMA_BASE + name
    return Draft7Validator(root, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)
