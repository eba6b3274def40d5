--- Without setup(): lsp/mmx.lua alone is a working vim.lsp.Config, so `vim.lsp.enable('mmx')`
--- starts `mmx-lsp` from $PATH, and the plugin's handlers and keys come with it.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('enable_only', function()
  t.load_plugin()
  t.ok(vim.fn.executable('mmx-lsp') == 1, 'mmx-lsp on $PATH')
  vim.lsp.config('mmx', { init_options = t.settings() })
  vim.lsp.enable('mmx')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b' })
  local client = t.attached(buf)
  t.eq(client.config.cmd, { 'mmx-lsp' }, 'the default command')
  t.eq((client.server_info or {}).name, 'mmx-lsp', 'server name')
  t.ok(client.server_capabilities.inlineCompletionProvider, 'the server offers inline completion')
  t.ok(require('mmx.inline').states[buf], 'ghost text wired by on_attach')
  local d = t.execute(client, 'mmx.explain', { uri = vim.uri_from_bufnr(buf), position = { line = 1, character = 4 } })
  t.eq(d.model, 'stub-cheap', 'init_options reached the server')
end)
