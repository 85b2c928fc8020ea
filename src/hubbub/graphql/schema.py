"""The schema to serve: a graphql-core `GraphQLSchema`, or a Strawberry or Ariadne one, by object
or by import path ("package.module:attribute", the `graphql_schema` setting)."""

from __future__ import annotations

import importlib
from typing import Any

from hubbub.errors import ConfigError

INSTALL_HINT = "GraphQL needs graphql-core: pip install 'hubbub[graphql]'"


def import_graphql() -> Any:
    """graphql-core, or a ConfigError that says how to install it."""
    try:
        return importlib.import_module("graphql")
    except ImportError:
        raise ConfigError(f"setting 'graphql_schema': {INSTALL_HINT}") from None


def load_schema(spec: str) -> Any:
    """The GraphQLSchema named by "package.module:attribute"."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError(f"setting 'graphql_schema': {spec!r} is not 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == "graphql":  # the schema's module needs graphql-core, which is missing
            raise ConfigError(f"setting 'graphql_schema': {INSTALL_HINT}") from None
        raise ConfigError(f"setting 'graphql_schema': cannot import {module_name!r}: {exc}") from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(f"setting 'graphql_schema': {module_name!r} has no {attribute!r}") from None
    return as_graphql_schema(value)


def as_graphql_schema(value: Any) -> Any:
    """graphql-core's schema behind `value`: itself, or a Strawberry `Schema`'s `_schema`."""
    graphql = import_graphql()
    if isinstance(value, graphql.GraphQLSchema):
        return value
    inner = getattr(value, "_schema", None)  # strawberry.Schema wraps graphql-core's
    if isinstance(inner, graphql.GraphQLSchema):
        return inner
    raise ConfigError(f"setting 'graphql_schema': {type(value).__name__} is not a GraphQL schema")
