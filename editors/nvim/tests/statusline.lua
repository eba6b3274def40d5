--- After a routed request the statusline shows tier, model, the request's cost and the
--- session's cost, e.g. `cheap · stub-cheap · $0.0001 (today $0.0001)`.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('statusline', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50 } })), 'setup() succeeds')
  vim.o.statusline = "%f %{v:lua.require'mmx'.statusline()}"
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.attached(buf)
  t.eq(require('mmx').statusline(), '', 'empty before the first request')

  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  local s = t.type_for_status('A ', 'a completion')
  t.log('status: %s', vim.inspect(s))
  t.eq(s.kind, 'inline', 'status kind')
  t.eq(s.tier, 'cheap', 'status tier')
  t.eq(s.model, 'stub-cheap', 'status model')
  t.ok(type(s.cost_usd) == 'number' and s.cost_usd > 0, 'a model call costs something')
  local line = require('mmx').statusline()
  t.log('statusline: %s', line)
  t.ok(
    line:match('^cheap · stub%-cheap · %$%d+%.%d+ %(today %$%d+%.%d+%)$'),
    'statusline has tier, model, cost and session cost: ' .. line
  )
  t.ok(line:find(require('mmx.status').format_usd(s.cost_usd), 1, true), 'the cost of this request')
  t.ok(line:find('(today ' .. require('mmx.status').format_usd(s.session_cost_usd) .. ')', 1, true), 'session cost')

  -- The same text in the real statusline and in the lualine component.
  local rendered = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str
  t.ok(rendered:find(line, 1, true), 'rendered statusline: ' .. rendered)
  t.eq(require('mmx.status').lualine()[1](), line, 'lualine component')
  t.feed('<Esc>')

  vim.cmd('Mmx log')
  local log = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  t.ok(log:find('inline cheap · stub-cheap', 1, true), ':Mmx log lists the request:\n' .. log)
end)
