--- A long code action (the model takes seconds) shows its progress from the server's
--- work-done reports: in the statusline, and after a second in the message area, as one line
--- that never asks to press ENTER; typing goes on meanwhile; the result shows when it ends.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('progress', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts()), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a+b', '', '' })
  t.attached(buf)
  local status = require('mmx.status')

  -- The stub waits 3 s before it answers: the refactor runs for that long at least.
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('normal! Vj')
  vim.lsp.buf.code_action({
    context = { only = { 'refactor.rewrite.mmx' }, diagnostics = {} },
    apply = true,
  })
  vim.api.nvim_input('<Esc>')
  local line = t.wait(5000, function()
    local s = require('mmx').statusline()
    return s:find('^⋯ ') and s
  end, 'the statusline to show the running action')
  t.ok(line:find('Refactor selection', 1, true), 'the statusline names the action: ' .. line)

  -- Typing goes on while the model works.
  vim.api.nvim_win_set_cursor(0, { 4, 0 })
  t.feed('i# still typing')
  t.eq(vim.api.nvim_get_mode().mode, 'i', 'still in Insert mode')
  local shown = t.wait(5000, function()
    return t.shown('^mmx: ⋯ %d+ s · Refactor selection')[1]
  end, 'the running action in the message area')
  t.ok(shown.line:find('^mmx: ⋯ %d+ s · '), 'with the time it has run: ' .. shown.line)
  t.ok(vim.fn.strdisplaywidth(shown.line) < vim.v.echospace, 'one line that fits: ' .. shown.line)
  t.feed('<Esc>')
  t.eq(vim.api.nvim_buf_get_lines(buf, 3, 4, false)[1], '# still typing', 'the typed text landed')

  -- When it ends: the result (tier, model, cost) is shown, and the statusline moves on.
  t.wait(20000, function()
    return next(status.progress) == nil and #t.shown('^mmx refactor → ') > 0
  end, 'the result of the action')
  t.ok(not require('mmx').statusline():find('^⋯'), 'the statusline no longer shows it running')
end)
