"""mmx-lsp: route each code-assistant request to the cheapest model that does the job well."""

__version__ = "0.1.0"
