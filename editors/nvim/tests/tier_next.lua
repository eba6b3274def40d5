--- `:Mmx tier premium` (scope next) sends the next request to the premium tier, and only that
--- one; the statusline follows. The accept key is configurable (here <C-l>).
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('tier_next', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50, accept_key = '<C-l>' } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.attached(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })

  local s = t.type_for_status('A ', 'the first completion')
  t.eq(s.tier, 'cheap', 'first request on auto')
  t.feed('<Esc>')

  vim.cmd('Mmx tier premium')
  t.wait(5000, function()
    return t.notified('premium for the next request')
  end, 'the override to be confirmed')

  s = t.type_for_status('A ', 'the completion after the override')
  t.eq(s.tier, 'premium', 'the next request goes to premium')
  t.eq(s.model, 'stub-premium', 'premium model')
  t.ok(require('mmx').statusline():match('^premium · stub%-premium · '), 'statusline shows premium')
  t.feed('<Esc>')

  s = t.type_for_status('A ', 'the completion after that')
  t.eq(s.tier, 'cheap', 'a next override is used up by one request')

  -- The configured key accepts; <Tab> is left alone.
  t.wait_ghost(buf)
  t.ok(vim.fn.maparg('<Tab>', 'i', false, true).buffer ~= 1, 'no buffer mapping for <Tab>')
  t.feed('<C-l>')
  t.wait(3000, function()
    return vim.api.nvim_get_current_line():find('return a + b', 1, true)
  end, '<C-l> to insert the suggestion')
  t.feed('<Esc>')
end)
