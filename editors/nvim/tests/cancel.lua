--- Neovim 0.11 path: typing on while a request is in flight cancels it ($/cancelRequest), and
--- its late answer is never drawn.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('cancel', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50, native = false } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  local client = t.attached(buf)
  local inline = require('mmx.inline')

  local cancelled = {}
  local cancel = client.cancel_request
  client.cancel_request = function(self, id)
    table.insert(cancelled, id)
    return cancel(self, id)
  end

  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  t.feed('A ')
  local first = t.wait(5000, function()
    return inline.states[buf].pending
  end, 'a request in flight')
  t.feed('r')
  t.ok(vim.list_contains(cancelled, first), 'the first request was cancelled')
  t.ok(not t.ghost_text(buf), 'nothing drawn for the cancelled request')
  local second = t.wait(5000, function()
    local p = inline.states[buf].pending
    return p ~= first and p
  end, 'the next request')
  t.ok(second ~= first, 'a new request for the new text')
  t.feed('<Esc>')
  t.ok(vim.list_contains(cancelled, second), 'leaving Insert mode cancels too')
  t.sleep(300)
  t.ok(not t.ghost_text(buf), 'no ghost text after leaving Insert mode')
end)
