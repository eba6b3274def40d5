--- The assistant code actions come through vim.lsp.buf.code_action with tier, model and cost
--- in their titles; the source.mmx.tier actions override the tier.
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

--- Applies the one code action whose title contains `title`, as a user picking it would.
---@param title string
local function apply(title)
  vim.lsp.buf.code_action({
    context = { only = { 'source.mmx.tier' }, diagnostics = {} },
    filter = function(action)
      return action.title:find(title, 1, true) ~= nil
    end,
    apply = true,
  })
end

t.run('code_actions', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts()), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    return a + b', '' })
  local client = t.attached(buf)
  vim.api.nvim_win_set_cursor(0, { 2, 4 })

  -- The list, as vim.lsp.buf.code_action() asks for it.
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding) --[[@as table]]
  params.context = { diagnostics = {} }
  local titles = {}
  local done = false
  client:request('textDocument/codeAction', params, function(err, result)
    t.ok(not err, 'codeAction: ' .. vim.inspect(err))
    for _, a in ipairs(result or {}) do
      titles[a.title] = a.kind
    end
    done = true
  end, buf)
  t.wait(10000, function()
    return done
  end, 'the code actions')
  t.log('actions: %s', vim.inspect(titles))
  local priced = 0
  for title, kind in pairs(titles) do
    if kind == 'refactor.rewrite.mmx' or kind == 'refactor.mmx.docstring' or kind == 'refactor.mmx.explain' then
      t.ok(title:find('cheap') or title:find('premium'), 'tier in ' .. title)
      t.ok(title:find('stub%-'), 'model in ' .. title)
      t.ok(title:find('%$'), 'cost in ' .. title)
      priced = priced + 1
    end
  end
  t.ok(priced >= 2, 'assistant actions listed')
  t.eq(titles['mmx: use premium for this file'], 'source.mmx.tier', 'tier override action listed')

  -- :Mmx actions offers the mmx actions through vim.ui.select, titles as the server wrote them.
  local offered = nil
  local select = vim.ui.select
  vim.ui.select = function(items, opts, on_choice)
    offered = {}
    for _, item in ipairs(items) do
      table.insert(offered, opts.format_item and opts.format_item(item) or tostring(item))
    end
    on_choice(nil)
  end
  vim.cmd('Mmx actions')
  t.wait(10000, function()
    return offered
  end, ':Mmx actions to offer the actions')
  vim.ui.select = select
  t.log(':Mmx actions offered: %s', vim.inspect(offered))
  t.ok(#offered >= 3, 'actions offered')
  local text = table.concat(offered, '\n')
  t.ok(text:find('Refactor selection — cheap · stub-cheap · ', 1, true), 'refactor action with tier, model, cost')
  t.ok(text:find('use premium for this file', 1, true), 'tier override action')

  apply('use premium for this file')
  t.wait(5000, function()
    return decision(client, buf).tier == 'premium'
  end, 'the file override from the code action')

  apply('back to auto')
  t.wait(5000, function()
    return decision(client, buf).tier == 'cheap'
  end, 'back to auto from the code action')

  apply('use premium for the next request')
  t.wait(5000, function()
    return decision(client, buf).tier == 'premium'
  end, 'the next-request override from the code action')
  -- Explaining does not use up a "next" override.
  t.eq(decision(client, buf).tier, 'premium', 'explain leaves the next override')
end)
