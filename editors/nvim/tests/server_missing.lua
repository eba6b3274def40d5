--- The server executable is missing: setup() says so and what to do, :checkhealth reports it,
--- the commands explain instead of failing, and the editor keeps working.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('server_missing', function()
  t.load_plugin()
  local ok = require('mmx').setup(t.opts({ server = { path = t.env.workdir .. '/no-such-mmx-lsp', args = {} } }))
  t.eq(ok, false, 'setup() returns false')
  local n = t.notified('no%-such%-mmx%-lsp')
  t.ok(n and n.level == vim.log.levels.ERROR, 'an error names the missing executable')
  t.ok(n.message:find('checkhealth mmx', 1, true), 'the message points at :checkhealth mmx')

  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.feed('GAreturn a<Tab>+ b<Esc>')
  local line = vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]
  t.ok(line:find('^%s+return a%s+%+ b$'), 'typed text (with <Tab>): ' .. vim.inspect(line))
  t.eq(#vim.lsp.get_clients({ name = 'mmx' }), 0, 'no client')

  vim.cmd('Mmx tier premium')
  t.ok(t.notified('not running'), ':Mmx tier says the server is not running')

  vim.cmd('checkhealth mmx')
  local report = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  t.ok(report:find('no%-such%-mmx%-lsp" not found'), 'checkhealth names the missing executable:\n' .. report)
  t.ok(report:find('ERROR'), 'checkhealth reports an error')
  t.ok(not report:find('sk%-test'), 'the API key is never printed')
end)
