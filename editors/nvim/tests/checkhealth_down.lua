--- `:checkhealth mmx` while the model servers are down: an error for each tier that says what
--- to fix, never "all is well"; and a tier whose model the endpoint does not list is a warning.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

---@return string
local function report()
  vim.cmd('checkhealth mmx')
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  vim.cmd('tabclose')
  return text
end

t.run('checkhealth_down', function()
  t.load_plugin()
  -- Both tiers on the discard port, where nothing listens.
  local opts = t.opts()
  opts.settings.providers.stub.base_url = 'http://127.0.0.1:9/v1'
  t.ok(require('mmx').setup(opts), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b' })
  t.attached(buf)

  local text = report()
  t.log('checkhealth:\n%s', text)
  t.ok(text:find('mmx: endpoints', 1, true), 'an endpoints section')
  t.ok(text:find('ERROR cheap tier: stub%-cheap at http://127.0.0.1:9/v1: cannot reach'), 'cheap tier down')
  t.ok(text:find('ERROR premium tier: stub%-premium at http://127.0.0.1:9/v1: cannot reach'), 'premium tier down')
  t.ok(text:find('start the model server', 1, true), 'says what to fix')
  t.ok(not text:find(vim.env.MMX_STUB_KEY, 1, true), 'the key itself is never printed')

  -- The endpoint answers, but lists no such model: a warning naming the setting to fix.
  local settings = t.settings()
  settings.tiers.premium.model = 'no-such-model'
  t.ok(require('mmx').update_settings(settings), 'update_settings() succeeds')
  text = report() -- the settings notification reaches the server before the check
  t.log('checkhealth:\n%s', text)
  t.ok(text:find('OK cheap tier: stub%-cheap at http://127.0.0.1:%d+/v1, answers in %d+ ms'), 'cheap tier up')
  t.ok(text:find("WARNING premium tier: no%-such%-model at .*does not list model 'no%-such%-model'"), 'model missing')
  t.ok(text:find('tiers.premium.model', 1, true), 'names the setting')
end)
