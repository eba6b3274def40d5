--- Malformed `mmx/status` payloads are ignored with a warning; a status with an `error` field
--- is shown with vim.notify; the statusline keeps working.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('malformed_status', function()
  t.load_plugin()
  local mmx = require('mmx')
  -- The handler as Neovim's client would call it (the one lsp/mmx.lua registers).
  local handler = vim.lsp.config.mmx.handlers['mmx/status']
  local ctx = { method = 'mmx/status', client_id = 1 }
  t.eq(mmx.statusline(), '', 'empty statusline before any request')

  local fmt = require('mmx.status').format_usd
  for usd, want in pairs({
    [0] = '$0.00',
    [0.42] = '$0.42',
    [1.5] = '$1.50',
    [0.01] = '$0.01',
    [0.00031] = '$0.0003',
    [0.0042] = '$0.0042',
    [0.000028] = '$0.00003',
    [0.0000004] = '$0.000000',
  }) do
    t.eq(fmt(usd), want, 'format_usd(' .. usd .. ')')
  end

  local good = {
    request_id = 'r1',
    kind = 'inline',
    tier = 'cheap',
    model = 'gpt-5-mini',
    cost_usd = 0.00031,
    session_cost_usd = 0.42,
    cached = false,
  }
  handler(nil, good, ctx)
  t.eq(mmx.statusline(), 'cheap · gpt-5-mini · $0.0003 (today $0.42)', 'statusline')

  for _, bad in ipairs({
    'garbage',
    vim.NIL,
    42,
    { request_id = 'r2' },
    { tier = 5, model = 'x' },
    { tier = 'cheap', model = 'x', cost_usd = 'free' },
    { tier = 'cheap', model = { 'x' } },
  }) do
    local ok, err = pcall(handler, nil, bad, ctx)
    t.ok(ok, 'handler does not raise for ' .. vim.inspect(bad) .. ': ' .. tostring(err))
  end
  t.eq(mmx.statusline(), 'cheap · gpt-5-mini · $0.0003 (today $0.42)', 'statusline kept')
  local warn = t.notified('malformed mmx/status')
  t.ok(warn and warn.level == vim.log.levels.WARN, 'one warning for malformed statuses')

  handler(nil, {
    request_id = 'r3',
    kind = 'refactor',
    tier = 'premium',
    model = 'gpt-5.5',
    error = 'provider unavailable (HTTP 503)',
    session_cost_usd = 0.42,
  }, ctx)
  local err = t.wait(2000, function()
    return t.notified('failed: provider unavailable')
  end, 'the error to be shown')
  t.ok(err and err.level == vim.log.levels.ERROR, 'error status shown as an error')
  t.eq(mmx.statusline(), 'premium · gpt-5.5 · error', 'statusline shows the failure')

  -- The lualine component returns the same text.
  local component = require('mmx.status').lualine()
  t.eq(component[1](), mmx.statusline(), 'lualine component')
  t.ok(component.cond(), 'lualine component shows')

  -- :Mmx log lists what happened, including the failure.
  vim.cmd('Mmx log')
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  t.ok(text:find('provider unavailable', 1, true), ':Mmx log shows the error')
  t.ok(text:find('malformed', 1, true), ':Mmx log shows the ignored status')
end)
