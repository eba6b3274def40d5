--- Ghost text appears as an extmark while typing, <Tab> inserts it, and the server records
--- the acceptance.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('inline_accept', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50 } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  local client = t.attached(buf)
  local sent = t.record_commands(client)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  t.feed('A')
  t.feed(' ')
  local ghost = t.wait_ghost(buf)
  t.log('ghost text: %q', ghost)
  t.ok(ghost:find('return a + b', 1, true), 'the ghost text is the model answer')
  -- Neovim's own inline completion where it exists, the plugin's extmarks otherwise.
  local native = vim.lsp.inline_completion ~= nil
  local _, namespace = t.ghost_text(buf)
  t.eq(namespace, native and 'nvim.lsp.inline_completion' or 'mmx.inline', 'ghost text drawn by')
  t.eq(require('mmx.inline').states[buf].native, native, 'native path used where available')
  t.eq(vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1], '     ', 'ghost text is not in the buffer yet')

  t.feed('<Tab>')
  t.wait(3000, function()
    return vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]:find('return a + b', 1, true)
  end, 'the suggestion to be inserted')
  t.eq(vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1], '     return a + b', 'line after accepting')
  t.ok(not t.ghost_text(buf), 'no ghost text after accepting')
  t.feed('<Esc>')

  -- The item's command went to the server, which recorded the verdict for that request.
  local accepted = t.wait_command(sent, 'mmx.accepted')
  local status = t.wait_status(accepted.arguments[1].request_id)
  t.eq(status.kind, 'inline', 'mmx.accepted names the inline request shown')
  t.eq(#accepted.arguments, 1, 'one argument object')
  t.ok(not accepted.err, 'mmx.accepted succeeded: ' .. vim.inspect(accepted.err))
  t.eq(accepted.result.verdict, 'accepted', 'the server recorded the acceptance')
  for _, e in ipairs(sent) do
    t.ok(e.command ~= 'mmx.rejected', 'nothing rejected')
  end
  t.wait(10000, function()
    return t.stats_sum(client, 'accepted') == 1
  end, 'mmx.stats to count the acceptance')
end)
