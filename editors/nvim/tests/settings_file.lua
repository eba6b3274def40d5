--- Editing mmx.toml applies to the running server without a restart: the plugin reports the
--- change (workspace/didChangeWatchedFiles) and the server reads its settings again.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

---@param model string
local function write_toml(model)
  vim.fn.writefile({
    '[providers.stub]',
    ('base_url = "%s"'):format(t.env.stub_url),
    'api_key_env = "MMX_STUB_KEY"',
    '[tiers.cheap]',
    'provider = "stub"',
    ('model = "%s"'):format(model),
    '[tiers.premium]',
    'provider = "stub"',
    'model = "stub-premium"',
  }, t.env.workdir .. '/mmx.toml')
end

t.run('settings_file', function()
  write_toml('stub-cheap')
  t.load_plugin()
  -- No settings in setup(): the workspace's mmx.toml decides.
  local opts = t.opts()
  opts.settings = nil
  t.ok(require('mmx').setup(opts), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b', '' })
  local client = t.attached(buf)
  local function model()
    return t.execute(client, 'mmx.explain', { uri = vim.uri_from_bufnr(buf), position = { line = 1, character = 4 } }).model
  end
  t.eq(model(), 'stub-cheap', 'the model from mmx.toml')

  write_toml('stub-model')
  t.wait(10000, function()
    return model() == 'stub-model'
  end, 'the server to use the edited mmx.toml')
  t.eq(client.id, vim.lsp.get_clients({ name = 'mmx' })[1].id, 'the same server, not a restart')

  -- A bad value is reported (as one line, like any settings error); the server runs on.
  vim.fn.writefile({ '[routing]', 'premium_above = "high"' }, t.env.workdir .. '/mmx.toml')
  t.wait(10000, function()
    return t.notified('premium_above')
  end, 'the error about the bad value')
  t.eq(#vim.lsp.get_clients({ name = 'mmx' }), 1, 'the server still runs')
end)
