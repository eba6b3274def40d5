--- The provider fails: the status carries an `error`, the statusline says so, the failure is
--- shown once as one line in the message area (never as vim.notify stacks or a prompt), the
--- key never appears, and editing goes on.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('error_status', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50 } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.attached(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  local s = t.type_for_status('A ', 'a completion that fails')
  t.log('status: %s', vim.inspect(s))
  t.ok(type(s.error) == 'string' and s.error ~= '', 'the status has an error')
  local n = t.wait(5000, function()
    return t.notified('request on %a+ failed')
  end, 'the error message')
  t.eq(n.level, vim.log.levels.ERROR, 'shown as an error')
  t.ok(not n.message:find(vim.env.MMX_STUB_KEY, 1, true), 'no key in the message')
  t.ok(require('mmx').statusline():match(' · error$'), 'statusline: ' .. require('mmx').statusline())
  t.ok(not t.ghost_text(buf), 'no ghost text')

  -- More failures within the minute: in the status and the log, not shown again.
  s = t.type_for_status('b', 'a second completion that fails')
  t.ok(type(s.error) == 'string', 'the second request failed too')
  t.sleep(300)
  t.eq(#t.shown('request on %a+ failed'), 1, 'one message for the same kind of failure')
  for _, shown in ipairs(require('mmx.status').shown) do
    t.ok(vim.fn.strdisplaywidth(shown.line) < vim.v.echospace, 'one line that fits: ' .. shown.line)
  end
  t.eq(#t.notifications, 0, 'nothing through vim.notify while typing')
  t.feed('x<Esc>')
  t.eq(vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1], '     bx', 'typing goes on')
end)
