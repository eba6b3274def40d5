--- <Tab> is a plain key while no suggestion shows; <C-]> hides a suggestion, leaves the
--- buffer as it was, and the server records the rejection.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('dismiss', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 100 } })), 'setup() succeeds')
  local buf = t.open('notes.py', { 'x = 1', '' })
  local client = t.attached(buf)
  local sent = t.record_commands(client)
  vim.bo[buf].expandtab = false

  -- No suggestion yet: <Tab> inserts a tab.
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  t.feed('A<Tab>')
  t.eq(vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1], '\t', '<Tab> falls through')

  local ghost = t.wait_ghost(buf)
  t.ok(ghost ~= '', 'a suggestion shows')
  t.feed('<C-]>')
  t.wait(3000, function()
    return not t.ghost_text(buf)
  end, 'the suggestion to go away')
  t.eq(vim.api.nvim_buf_get_lines(buf, 0, -1, false), { 'x = 1', '\t' }, 'buffer unchanged')
  t.feed('<Esc>')
  local rejected = t.wait_command(sent, 'mmx.rejected')
  local status = t.wait_status(rejected.arguments[1].request_id)
  t.eq(status.kind, 'inline', 'mmx.rejected names the inline request shown')
  t.ok(not rejected.err, 'mmx.rejected succeeded: ' .. vim.inspect(rejected.err))
  t.eq(rejected.result.verdict, 'rejected', 'the server recorded the rejection')
  for _, e in ipairs(sent) do
    t.ok(e.command ~= 'mmx.accepted', 'nothing accepted')
  end
  t.wait(10000, function()
    return t.stats_sum(client, 'rejected') == 1
  end, 'mmx.stats to count the rejection')
  t.eq(t.stats_sum(client, 'accepted'), 0, 'mmx.stats counts no acceptance')
end)
