--- Options of the wrong type: setup() says which option and why, changes nothing, and the
--- editor keeps working.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

---@param opts any
---@param pattern string
local function rejected(opts, pattern)
  local before = #t.notifications
  local ok_call, ret = pcall(require('mmx').setup, opts)
  t.ok(ok_call, 'setup() does not raise for ' .. vim.inspect(opts) .. ': ' .. tostring(ret))
  t.eq(ret, false, 'setup() returns false for ' .. vim.inspect(opts))
  local n = t.notifications[before + 1]
  t.ok(n, 'a message for ' .. vim.inspect(opts))
  t.eq(n.level, vim.log.levels.ERROR, 'message level')
  t.ok(n.message:find(pattern), ('message %q names %q'):format(n.message, pattern))
  t.ok(not n.message:find('%.lua:%d+'), 'message shows no Lua location: ' .. n.message)
end

t.run('bad_options', function()
  t.load_plugin()
  rejected('python', 'opts: expected table, got string')
  rejected({ filetypes = 'python' }, 'filetypes: expected list of filetype names')
  rejected({ server = { args = '--stdio' } }, 'server%.args: expected list of strings')
  rejected({ server = { path = 42 } }, 'server%.path: expected string, got number')
  rejected({ inline = { debounce_ms = 'fast' } }, 'inline%.debounce_ms: expected non%-negative integer')
  rejected({ inline = { accept_key = true } }, 'inline%.accept_key: expected key string or false')
  rejected({ settings = 'cheap' }, 'settings: expected table, got string')
  rejected({ status = { notify_errors = 'yes' } }, 'status%.notify_errors: expected boolean')

  -- Nothing was configured or started.
  t.eq(vim.lsp.is_enabled and vim.lsp.is_enabled('mmx') or false, false, 'mmx is not enabled')
  t.eq(require('mmx.config').values.inline.debounce_ms, 150, 'defaults kept')
  t.ok(not require('mmx').update_settings('x'), 'update_settings() rejects a string')

  -- The editor still edits, and <Tab> is a plain <Tab>.
  local buf = t.open('plain.txt', { 'x = 1' })
  t.feed('Ay = 2<Tab>z<Esc>')
  t.eq(vim.api.nvim_buf_get_lines(buf, 0, -1, false), { 'x = 1y = 2\tz' }, 'typed text')
  t.eq(#vim.lsp.get_clients({ name = 'mmx' }), 0, 'no mmx client')
end)
