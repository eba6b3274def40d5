--- `:Mmx tier` overrides the tier the server routes to: for this file, for the session, back
--- to auto; :Mmx explain shows the routing Decision in a floating window.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

---@param client vim.lsp.Client
---@param bufnr integer
---@return table
local function decision(client, bufnr)
  return t.execute(client, 'mmx.explain', {
    uri = vim.uri_from_bufnr(bufnr),
    position = { line = 1, character = 4 },
  })
end

---@param pattern string
local function wait_notified(pattern)
  return t.wait(5000, function()
    return t.notified(pattern)
  end, 'a message matching ' .. pattern)
end

t.run('tier_command', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts()), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b', '' })
  local client = t.attached(buf)

  local before = decision(client, buf)
  t.eq(before.tier, 'cheap', 'a one-line completion routes to cheap')
  t.ok(before.override == nil or before.override == vim.NIL, 'no override yet')

  vim.cmd('Mmx tier premium file')
  wait_notified('premium for this file')
  local d = decision(client, buf)
  t.eq(d.tier, 'premium', 'tier after :Mmx tier premium file')
  t.eq(d.model, 'stub-premium', 'model after :Mmx tier premium file')
  t.ok(d.override ~= nil and d.override ~= vim.NIL, 'the Decision names the override')

  -- Another file is not affected.
  vim.cmd('split')
  local other = t.open('other.py', { 'def sub(a, b):', '    return a - b' })
  t.attached(other)
  t.eq(decision(client, other).tier, 'cheap', 'the other file stays on auto')
  vim.cmd('close')

  vim.cmd('Mmx tier auto file')
  wait_notified('back to auto for this file')
  t.eq(decision(client, buf).tier, 'cheap', 'back to auto')

  vim.cmd('Mmx tier premium session')
  wait_notified('premium for this session')
  t.eq(decision(client, other).tier, 'premium', 'a session override covers every file')
  vim.cmd('Mmx tier auto session')
  wait_notified('back to auto for this session')
  t.eq(decision(client, buf).tier, 'cheap', 'session override cleared')

  -- Bad arguments are refused in the editor, with the choices.
  vim.cmd('Mmx tier gold')
  t.ok(t.notified('unknown tier "gold"'), 'unknown tier refused')
  vim.cmd('Mmx tier premium forever')
  t.ok(t.notified('unknown scope "forever"'), 'unknown scope refused')

  -- :Mmx explain: the Decision in a floating window.
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  vim.cmd('Mmx explain')
  local float = t.wait(5000, function()
    for _, win in ipairs(vim.api.nvim_list_wins()) do
      if vim.api.nvim_win_get_config(win).relative ~= '' then
        return win
      end
    end
  end, 'the explain window')
  local text = table.concat(vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(float), 0, -1, false), '\n')
  t.log('explain window:\n%s', text)
  t.ok(text:find('inline → cheap', 1, true), 'kind and tier in the title')
  t.ok(text:find('stub-cheap', 1, true), 'model')
  t.ok(text:find('premium: $', 1, true), 'estimate on the premium tier')
  vim.api.nvim_win_close(float, true)

  -- On a selection, the Decision is for a refactor.
  vim.cmd('1,2Mmx explain')
  float = t.wait(5000, function()
    for _, win in ipairs(vim.api.nvim_list_wins()) do
      if vim.api.nvim_win_get_config(win).relative ~= '' then
        return win
      end
    end
  end, 'the explain window for a range')
  text = table.concat(vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(float), 0, -1, false), '\n')
  t.ok(text:find('refactor → ', 1, true), 'a range explains a refactor:\n' .. text)
end)
