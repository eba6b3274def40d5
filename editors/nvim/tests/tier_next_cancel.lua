--- `:Mmx tier premium next`, then a request that is cancelled (typing went on while the model
--- thought): the override is not used up by it, and the next request that answers goes to
--- premium; the one after is back on auto.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

---@param client vim.lsp.Client
---@return integer? id of the inline completion request in flight
local function in_flight(client)
  for id, r in pairs(client.requests) do
    if r.type == 'pending' and r.method == 'textDocument/inlineCompletion' then
      return id
    end
  end
end

t.run('tier_next_cancel', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50 } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  local client = t.attached(buf)
  local cancelled = {}
  local cancel = client.cancel_request
  client.cancel_request = function(self, id)
    table.insert(cancelled, id)
    return cancel(self, id)
  end

  vim.cmd('Mmx tier premium next')
  t.wait(5000, function()
    return t.notified('premium for the next request')
  end, 'the override to be confirmed')

  -- The stub takes 3 s to answer: type on before it does.
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  t.feed('A ')
  local first = t.wait(10000, function()
    return in_flight(client)
  end, 'a request in flight')
  t.sleep(500) -- past the server's own wait for typing to pause: the model is being asked
  t.feed('r')
  t.wait(5000, function()
    return vim.list_contains(cancelled, first)
  end, 'the first request to be cancelled')

  -- The request for the new text is the one that answers: premium.
  local s = t.wait(20000, function()
    return t.statuses[1]
  end, 'the status of the request that answers')
  t.eq(#t.statuses, 1, 'no status for the cancelled request')
  t.eq(s.tier, 'premium', 'the override was kept for the request that answered')
  t.eq(s.model, 'stub-premium', 'premium model')
  t.feed('<Esc>')

  s = t.type_for_status('A ', 'the completion after that')
  -- Routed on auto: cheap first (an escalation may still end on premium).
  t.eq(s.attempts[1].tier, 'cheap', 'the override was used up by the answered request')
  t.ok(not s.reason:find('you chose it', 1, true), 'no override in the reason: ' .. s.reason)
  t.feed('<Esc>')
end)
