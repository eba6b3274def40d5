--- Settings go to the server as initializationOptions, and changes reach the running server
--- (workspace/didChangeConfiguration with {settings = {mmx = …}}).
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

t.run('settings_change', function()
  t.load_plugin()
  local opts = t.opts()
  t.ok(require('mmx').setup(opts), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b', '' })
  local client = t.attached(buf)
  t.eq(client.config.init_options.tiers.cheap.model, 'stub-cheap', 'settings sent as initializationOptions')
  t.eq(decision(client, buf).model, 'stub-cheap', 'the server uses the initial settings')

  local settings = vim.deepcopy(opts.settings)
  settings.tiers.cheap.model = 'stub-model'
  t.ok(require('mmx').update_settings(settings), 'update_settings() succeeds')
  t.wait(5000, function()
    return decision(client, buf).model == 'stub-model'
  end, 'the server to use the new cheap model')

  -- setup() again with other settings updates the running server too.
  settings.tiers.cheap.model = 'stub-cheap'
  t.ok(require('mmx').setup(vim.tbl_extend('force', opts, { settings = settings })), 'second setup()')
  t.wait(5000, function()
    return decision(client, buf).model == 'stub-cheap'
  end, 'the server to use the settings of the second setup()')
  t.eq(#vim.lsp.get_clients({ name = 'mmx' }), 1, 'still one client')
  -- The server answers workspace/configuration from the same settings.
  t.eq(client.settings.mmx.tiers.cheap.model, 'stub-cheap', 'client.settings.mmx')

  -- A key dropped in a later setup() is gone for a restarted server too (no merge).
  local sent ---@type table?
  local before_init = require('mmx').before_init
  require('mmx').before_init = function(params)
    before_init(params)
    sent = params.initializationOptions
  end
  settings.cache = nil
  settings.tiers.cheap.model = 'stub-model'
  t.ok(require('mmx').setup(vim.tbl_extend('force', opts, { settings = settings })), 'third setup()')
  vim.cmd('Mmx restart')
  t.wait(10000, function()
    local c = vim.lsp.get_clients({ name = 'mmx', bufnr = buf })[1]
    return c and c.id ~= client.id and c.initialized
  end, 'the restarted client')
  client = vim.lsp.get_clients({ name = 'mmx', bufnr = buf })[1]
  t.ok(sent and sent.cache == nil, 'initializationOptions without the dropped key: ' .. vim.inspect(sent))
  t.eq(sent.tiers.cheap.model, 'stub-model', 'initializationOptions are the current settings')
  t.eq(client.settings.mmx.cache, nil, 'client.settings without the dropped key')
  t.eq(decision(client, buf).model, 'stub-model', 'the restarted server uses the current settings')
end)
