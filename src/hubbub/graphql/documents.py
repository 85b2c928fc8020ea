"""GraphQL documents, parsed, measured and validated once per query text and kept in an LRU.

Validating a document costs about 0.6 ms against 20-30 us for an execution, so a reconnect storm
of 10,000 clients sending the same subscription would spend seconds validating it 10,000 times;
here it is validated once. Limits (bytes, depth, aliases, fields with fragments expanded) are
checked before validation, with work bounded by the limits themselves, so a hostile document
costs little however it is built (fragment bombs included).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from hubbub.graphql import PERSONAL
from hubbub.graphql.schema import import_graphql


@dataclass(frozen=True, slots=True)
class Limits:
    max_document_bytes: int
    max_depth: int
    max_aliases: int
    max_complexity: int


class DocumentRefused(Exception):
    """A document this server will not run; `code` goes in the error's extensions."""

    def __init__(self, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        listed = errors or [{"message": message}]
        self.errors = [{**error, "extensions": {**error.get("extensions", {}), "code": code}} for error in listed]


@dataclass(frozen=True, slots=True)
class Document:
    """A document that passed every check: what an operation needs to run it."""

    node: Any  # graphql.DocumentNode
    operations: dict[str | None, str]  # operation name (None: the only one) -> "query" | ...
    personal: bool  # selects a personal field: executed per user


class DocumentCache:
    """Parsed and validated documents by query text, least recently used evicted first; refusals
    are cached too, so the same bad document costs one check however often it comes."""

    def __init__(self, schema: Any, limits: Limits, size: int) -> None:
        self._graphql = import_graphql()
        self._schema = schema
        self._limits = limits
        self._size = max(1, size)
        self._entries: OrderedDict[str, Document | DocumentRefused] = OrderedDict()

    def get(self, query: str) -> Document:
        """The checked document for `query`; raises DocumentRefused."""
        entry = self._entries.get(query)
        if entry is None:
            if len(query.encode()) > self._limits.max_document_bytes:
                raise DocumentRefused("DOCUMENT_TOO_LARGE", f"document is over {self._limits.max_document_bytes} bytes")
            entry = self._check(query)
            self._entries[query] = entry
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(query)
        if isinstance(entry, DocumentRefused):
            raise entry
        return entry

    def _check(self, query: str) -> Document | DocumentRefused:
        graphql = self._graphql
        try:
            node = graphql.parse(query)  # its length is bounded already (max_document_bytes)
        except graphql.GraphQLError as error:
            return DocumentRefused("GRAPHQL_PARSE_FAILED", error.message, [error.formatted])
        try:
            measure(node, self._limits)
        except DocumentRefused as refused:
            return refused
        errors = graphql.validate(self._schema, node)
        if errors:
            return DocumentRefused(
                "GRAPHQL_VALIDATION_FAILED", errors[0].message, [error.formatted for error in errors]
            )
        operations: dict[str | None, str] = {}
        for definition in node.definitions:
            if isinstance(definition, graphql.OperationDefinitionNode):
                name = definition.name.value if definition.name else None
                operations[name] = definition.operation.value
        if len(operations) == 1:
            operations[None] = next(iter(operations.values()))
        return Document(node, operations, selects_personal_field(self._schema, node))


def measure(node: Any, limits: Limits) -> None:
    """Raise DocumentRefused past the depth, alias or field budget. Fragments are expanded where
    they are spread (that is what execution costs); counting stops at the first limit passed."""
    graphql = import_graphql()
    fragments = {
        definition.name.value: definition
        for definition in node.definitions
        if isinstance(definition, graphql.FragmentDefinitionNode)
    }
    aliases = 0
    fields = 0

    def walk(selection_set: Any, depth: int, spreading: frozenset[str]) -> None:
        nonlocal aliases, fields
        if selection_set is None:
            return
        if depth > limits.max_depth:
            raise DocumentRefused("TOO_DEEP", f"document nests fields deeper than {limits.max_depth}")
        for selection in selection_set.selections:
            if isinstance(selection, graphql.FieldNode):
                fields += 1
                if fields > limits.max_complexity:
                    raise DocumentRefused("TOO_COMPLEX", f"document selects more than {limits.max_complexity} fields")
                if selection.alias is not None:
                    aliases += 1
                    if aliases > limits.max_aliases:
                        raise DocumentRefused(
                            "TOO_MANY_ALIASES", f"document uses more than {limits.max_aliases} aliases"
                        )
                walk(selection.selection_set, depth + 1, spreading)
            elif isinstance(selection, graphql.InlineFragmentNode):
                walk(selection.selection_set, depth, spreading)
            elif isinstance(selection, graphql.FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in spreading:  # a cycle is validation's to report
                    walk(fragment.selection_set, depth, spreading | {name})

    for definition in node.definitions:
        if isinstance(definition, graphql.OperationDefinitionNode):
            walk(definition.selection_set, 1, frozenset())


def is_personal(field: Any) -> bool:
    """A field marked personal: extension `{"personal": True}` or the `@personal` directive."""
    if (field.extensions or {}).get(PERSONAL):
        return True
    ast_node = field.ast_node
    return ast_node is not None and any(d.name.value == PERSONAL for d in ast_node.directives or ())


def selects_personal_field(schema: Any, node: Any) -> bool:
    """Whether any field the document selects (its fragments included) is personal."""
    graphql = import_graphql()
    type_info = graphql.TypeInfo(schema)
    found = False

    visitor: Any = graphql.Visitor

    class Finder(visitor):  # type: ignore[misc]
        def enter_field(self, *_: Any) -> None:
            nonlocal found
            definition = type_info.get_field_def()
            if definition is not None and is_personal(definition):
                found = True

    graphql.visit(node, graphql.TypeInfoVisitor(type_info, Finder()))
    return found
