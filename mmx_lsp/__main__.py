"""`python -m mmx_lsp`: the same as the `mmx-lsp` command."""

from mmx_lsp.cli import main

raise SystemExit(main())
