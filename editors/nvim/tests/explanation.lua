--- The explain code action: the server answers with `mmx/explanation`, shown in a floating
--- Markdown window.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('explanation', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts()), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b', '' })
  t.attached(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  vim.lsp.buf.code_action({
    context = { only = { 'refactor.mmx.explain' }, diagnostics = {} },
    apply = true,
  })
  local float = t.wait(20000, function()
    for _, win in ipairs(vim.api.nvim_list_wins()) do
      if vim.api.nvim_win_get_config(win).relative ~= '' then
        return win
      end
    end
  end, 'the explanation window')
  local fbuf = vim.api.nvim_win_get_buf(float)
  local text = table.concat(vim.api.nvim_buf_get_lines(fbuf, 0, -1, false), '\n')
  t.log('explanation:\n%s', text)
  t.ok(text:find('return a + b', 1, true), 'the model answer shows')
  t.eq(vim.bo[fbuf].filetype, 'markdown', 'shown as Markdown')
  t.eq(vim.api.nvim_buf_get_lines(buf, 0, -1, false), { 'def add(a, b):', '    return a + b', '' }, 'no edit')
  -- The client declared that it shows mmx/explanation, so no copy comes as a message.
  t.sleep(300)
  t.ok(not t.notified('return a %+ b'), 'the explanation is not repeated through window/showMessage')
end)
