--- `:checkhealth mmx` with the server attached and the provider configured reports no error,
--- names what it checked, and never prints the API key.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

---@return string
local function report()
  vim.cmd('checkhealth mmx')
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  vim.cmd('tabclose')
  return text
end

t.run('checkhealth', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts()), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b' })
  t.attached(buf)

  local text = report()
  t.log('checkhealth:\n%s', text)
  t.ok(not text:find('ERROR'), 'no error')
  t.ok(not text:find('WARNING'), 'no warning')
  t.ok(text:find('OK Neovim 0%.1[12]'), 'Neovim version')
  t.ok(text:find('OK server .*mmx%-lsp %d'), 'server executable and its --version')
  t.ok(text:find('attached to 1 buffer'), 'server attached')
  t.ok(text:find('OK provider stub'), 'provider configured')
  t.ok(text:find('OK API key variable MMX_STUB_KEY is set', 1, true), 'API key variable present')
  t.ok(not text:find(vim.env.MMX_STUB_KEY, 1, true), 'the key itself is never printed')

  -- Without the variable, the report says which one is missing, still without any value.
  local key = vim.env.MMX_STUB_KEY
  vim.env.MMX_STUB_KEY = nil
  text = report()
  vim.env.MMX_STUB_KEY = key
  t.ok(text:find('ERROR API key variable MMX_STUB_KEY is not set'), 'a missing key is an error:\n' .. text)
end)
