--- `:Mmx stats` shows the server's metrics summary as a floating table.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('stats', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50 } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.attached(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  t.type_for_status('A ', 'a completion')
  t.feed('<Esc>')

  vim.cmd('Mmx stats')
  local float = t.wait(10000, function()
    for _, win in ipairs(vim.api.nvim_list_wins()) do
      if vim.api.nvim_win_get_config(win).relative ~= '' then
        return win
      end
    end
  end, 'the stats window')
  local lines = vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(float), 0, -1, false)
  local text = table.concat(lines, '\n')
  t.log('stats window:\n%s', text)
  t.ok(lines[1]:match('^mmx: 1 requests · cost %$%d'), 'totals line: ' .. lines[1])
  t.ok(text:find('model%s+tier%s+req'), 'table header')
  t.ok(text:find('stub%-cheap%s+cheap%s+1%s'), 'a row for the cheap model')
end)
