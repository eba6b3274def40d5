"""One module per LSP area; each registers its handlers on the server."""
