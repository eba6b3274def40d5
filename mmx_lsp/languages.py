"""languageId -> tree-sitter grammar and the node types that scoring and verification need."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath

from tree_sitter import Language, Parser


@dataclass(frozen=True)
class LanguageSpec:
    name: str
    module: str
    function: str
    # Node types that define a named thing (function, class, method …).
    definitions: frozenset[str]
    # Node types that make a block of statements (a function body, a class body …).
    blocks: frozenset[str]
    # Node types that are a statement (one "line" of code).
    statements: frozenset[str]
    # Node types of an identifier use.
    identifiers: frozenset[str] = frozenset({"identifier"})


# JavaScript and TypeScript share their node types (TypeScript adds a few definitions).
_JS_DEFINITIONS = frozenset(
    {
        "function_declaration",
        "method_definition",
        "class_declaration",
        "generator_function_declaration",
        "arrow_function",
        "function_expression",
        "function",
        "generator_function",
        "class",
    }
)
_JS_BLOCKS = frozenset({"statement_block", "class_body"})
_JS_STATEMENTS = frozenset(
    {
        "expression_statement",
        "return_statement",
        "if_statement",
        "for_statement",
        "for_in_statement",
        "while_statement",
        "lexical_declaration",
        "variable_declaration",
        "try_statement",
        "throw_statement",
        "switch_statement",
    }
)

SPECS: dict[str, LanguageSpec] = {
    "python": LanguageSpec(
        "python",
        "tree_sitter_python",
        "language",
        definitions=frozenset({"function_definition", "class_definition"}),
        blocks=frozenset({"block"}),
        statements=frozenset(
            {
                "expression_statement",
                "return_statement",
                "if_statement",
                "for_statement",
                "while_statement",
                "with_statement",
                "try_statement",
                "assert_statement",
                "raise_statement",
                "pass_statement",
                "import_statement",
                "import_from_statement",
                "match_statement",
                "delete_statement",
                "global_statement",
                "break_statement",
                "continue_statement",
            }
        ),
    ),
    "javascript": LanguageSpec(
        "javascript",
        "tree_sitter_javascript",
        "language",
        definitions=_JS_DEFINITIONS,
        blocks=_JS_BLOCKS,
        statements=_JS_STATEMENTS,
    ),
    "typescript": LanguageSpec(
        "typescript",
        "tree_sitter_typescript",
        "language_typescript",
        definitions=_JS_DEFINITIONS
        | frozenset(
            {"interface_declaration", "type_alias_declaration", "abstract_class_declaration"}
        ),
        blocks=_JS_BLOCKS,
        statements=_JS_STATEMENTS,
    ),
    "go": LanguageSpec(
        "go",
        "tree_sitter_go",
        "language",
        definitions=frozenset({"function_declaration", "method_declaration", "type_declaration"}),
        blocks=frozenset({"block"}),
        statements=frozenset(
            {
                "expression_statement",
                "return_statement",
                "if_statement",
                "for_statement",
                "short_var_declaration",
                "assignment_statement",
                "var_declaration",
                "go_statement",
                "defer_statement",
                "expression_switch_statement",
            }
        ),
    ),
    "rust": LanguageSpec(
        "rust",
        "tree_sitter_rust",
        "language",
        definitions=frozenset(
            {"function_item", "impl_item", "struct_item", "enum_item", "trait_item", "mod_item"}
        ),
        blocks=frozenset({"block", "declaration_list"}),
        statements=frozenset({"expression_statement", "let_declaration"}),
    ),
    "java": LanguageSpec(
        "java",
        "tree_sitter_java",
        "language",
        definitions=frozenset(
            {
                "method_declaration",
                "class_declaration",
                "interface_declaration",
                "constructor_declaration",
                "enum_declaration",
                "record_declaration",
            }
        ),
        blocks=frozenset({"block", "class_body", "constructor_body"}),
        statements=frozenset(
            {
                "expression_statement",
                "return_statement",
                "if_statement",
                "for_statement",
                "enhanced_for_statement",
                "while_statement",
                "local_variable_declaration",
                "try_statement",
                "throw_statement",
                "switch_expression",
            }
        ),
    ),
    "c": LanguageSpec(
        "c",
        "tree_sitter_c",
        "language",
        definitions=frozenset({"function_definition", "struct_specifier"}),
        blocks=frozenset({"compound_statement"}),
        statements=frozenset(
            {
                "expression_statement",
                "return_statement",
                "if_statement",
                "for_statement",
                "while_statement",
                "declaration",
                "switch_statement",
                "do_statement",
            }
        ),
    ),
    "cpp": LanguageSpec(
        "cpp",
        "tree_sitter_cpp",
        "language",
        definitions=frozenset(
            {"function_definition", "class_specifier", "struct_specifier", "namespace_definition"}
        ),
        blocks=frozenset({"compound_statement", "field_declaration_list"}),
        statements=frozenset(
            {
                "expression_statement",
                "return_statement",
                "if_statement",
                "for_statement",
                "for_range_loop",
                "while_statement",
                "declaration",
                "switch_statement",
            }
        ),
    ),
}
SPECS["typescriptreact"] = LanguageSpec(
    "typescriptreact",
    "tree_sitter_typescript",
    "language_tsx",
    SPECS["typescript"].definitions,
    SPECS["typescript"].blocks,
    SPECS["typescript"].statements,
)
SPECS["javascriptreact"] = SPECS["javascript"]

ALIASES = {
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
    "tsx": "typescriptreact",
    "jsx": "javascriptreact",
    "golang": "go",
    "rs": "rust",
    "c++": "cpp",
    "cc": "cpp",
}

EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".mts": "typescript",
    ".tsx": "typescriptreact",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
}

SUPPORTED = tuple(SPECS)

# Top-level node types that bring names in (imports, includes, package clauses), any language.
IMPORT_TYPES = frozenset(
    {
        "import_statement",
        "import_from_statement",
        "future_import_statement",
        "import_declaration",
        "package_clause",
        "package_declaration",
        "use_declaration",
        "preproc_include",
        "using_declaration",
    }
)


def spec_for(language_id: str) -> LanguageSpec | None:
    """The grammar spec for an LSP languageId, or None for plain text."""
    language_id = language_id.lower()
    return SPECS.get(ALIASES.get(language_id, language_id))


def language_of_path(path: str) -> str:
    return EXTENSIONS.get(PurePath(path).suffix.lower(), "plaintext")


@cache
def grammar(spec: LanguageSpec) -> Language:
    module = importlib.import_module(spec.module)
    return Language(getattr(module, spec.function)())


def grammar_for(language_id: str) -> Language | None:
    spec = spec_for(language_id)
    return grammar(spec) if spec else None


def parser_for(language_id: str) -> Parser | None:
    language = grammar_for(language_id)
    return Parser(language) if language else None
