--- `require('mmx').setup()` with no options at all: the server starts, attaches, and nothing
--- is shown (the settings go as an object, `{}`, never as the empty list `[]`).
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('setup_quiet', function()
  t.load_plugin()
  -- The server executable from $PATH, as a user with `pip install mmx-lsp` has it.
  t.eq(vim.fn.executable('mmx-lsp'), 1, 'mmx-lsp on $PATH')
  local sent = nil
  vim.api.nvim_create_autocmd('LspAttach', {
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      sent = client and client.config.init_options
    end,
  })
  t.ok(require('mmx').setup(), 'setup() with no options succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b' })
  local client = t.attached(buf)
  t.eq(vim.json.encode(sent), '{}', 'initializationOptions sent as an object')
  t.eq(vim.json.encode(client.settings.mmx), '{}', 'settings.mmx answered as an object')
  -- What the server says at start-up has had time to arrive.
  t.execute(client, 'mmx.stats', vim.empty_dict())
  t.sleep(1000)
  t.eq(t.notifications, {}, 'no message')
  t.eq(require('mmx.status').shown, {}, 'nothing shown in the message area')
  for _, e in ipairs(require('mmx.status').entries) do
    t.ok(not e.message:find('expected a table', 1, true), 'no settings error: ' .. e.message)
  end
end)
