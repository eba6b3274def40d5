--- The `:Mmx` subcommands and the server's `mmx.*` commands: tier override, explain, stats,
--- assistant code actions, and the `mmx/explanation` window.
local status = require('mmx.status')

local M = {}

local api = vim.api

M.TIERS = { 'premium', 'cheap', 'auto' }
M.SCOPES = { next = 'next', file = 'document', session = 'session' }

--- The mmx client for a buffer, or nil after telling the user why there is none.
---@param bufnr? integer
---@return vim.lsp.Client?
function M.client(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local client = vim.lsp.get_clients({ name = 'mmx', bufnr = bufnr })[1] or vim.lsp.get_clients({ name = 'mmx' })[1]
  if not client then
    status.notify(vim.log.levels.WARN, 'the server is not running for this buffer (see :checkhealth mmx)')
  end
  return client
end

--- Runs a server command with one JSON object argument.
---@param name string e.g. `mmx.setTier`
---@param args table
---@param on_result fun(result: any)
---@param bufnr? integer
function M.execute(name, args, on_result, bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    return
  end
  client:request('workspace/executeCommand', { command = name, arguments = { args } }, function(err, result)
    if err then
      status.notify(vim.log.levels.ERROR, ('%s failed: %s'):format(name, err.message or vim.inspect(err)))
      return
    end
    on_result(result)
  end, bufnr)
end

--- Opens a floating window near the cursor; returns its buffer and window.
---@param lines string[]
---@param syntax string
---@param focus_id string
---@return integer bufnr, integer winid
function M.float(lines, syntax, focus_id)
  return vim.lsp.util.open_floating_preview(lines, syntax, {
    border = 'rounded',
    focus_id = focus_id,
    max_width = math.max(40, math.floor(vim.o.columns * 0.8)),
    max_height = math.max(10, math.floor(vim.o.lines * 0.8)),
  })
end

--- `:Mmx tier {premium|cheap|auto} [next|file|session]`
---@param tier string
---@param scope? string
function M.set_tier(tier, scope)
  scope = scope or 'next'
  if not vim.list_contains(M.TIERS, tier) then
    status.notify(vim.log.levels.ERROR, ('unknown tier %q (premium, cheap or auto)'):format(tostring(tier)))
    return
  end
  if not M.SCOPES[scope] then
    status.notify(vim.log.levels.ERROR, ('unknown scope %q (next, file or session)'):format(scope))
    return
  end
  local bufnr = api.nvim_get_current_buf()
  local args = { tier = tier, scope = M.SCOPES[scope] }
  if scope == 'file' then
    args.uri = vim.uri_from_bufnr(bufnr)
  end
  M.execute('mmx.setTier', args, function(result)
    status.log(vim.log.levels.INFO, 'mmx.setTier ' .. vim.json.encode(args) .. ' -> ' .. vim.inspect(result))
    local where = ({ next = 'for the next request', file = 'for this file', session = 'for this session' })[scope]
    local text = tier == 'auto' and ('back to auto ' .. where) or ('%s %s'):format(tier, where)
    vim.notify('mmx: ' .. text, vim.log.levels.INFO, { title = 'mmx' })
  end, bufnr)
end

---@param v any
---@return string
local function show(v)
  if v == nil or v == vim.NIL then
    return '—'
  elseif type(v) == 'number' then
    return (math.floor(v) == v and ('%d'):format(v)) or ('%.4g'):format(v)
  elseif type(v) == 'table' then
    return vim.json.encode(v)
  end
  return tostring(v)
end

--- The routing Decision as Markdown lines.
---@param d table
---@return string[]
function M.decision_lines(d)
  local lines = {
    ('# mmx: %s → %s'):format(show(d.kind), show(d.tier)),
    '',
    ('- **model** %s'):format(show(d.model)),
    ('- **score** %s'):format(show(d.score)),
    ('- **reason** %s'):format(show(d.reason)),
    ('- **rule** %s'):format(show(d.rule)),
    ('- **override** %s'):format(show(d.override)),
    ('- **cached** %s'):format(show(d.cached)),
  }
  if type(d.estimate_usd) == 'table' then
    table.insert(lines, '')
    table.insert(lines, '## Estimated cost')
    for tier, usd in vim.spairs(d.estimate_usd) do
      local cost = type(usd) == 'number' and status.format_usd(usd) or show(usd)
      table.insert(lines, ('- %s: %s'):format(tier, cost))
    end
  end
  if type(d.features) == 'table' and next(d.features) then
    table.insert(lines, '')
    table.insert(lines, '## Features')
    for name, value in vim.spairs(d.features) do
      table.insert(lines, ('- %s: %s'):format(name, show(value)))
    end
  end
  return lines
end

--- `:Mmx explain`, or `:'<,'>Mmx explain` for a selection: why the request would go where.
---@param range? integer[] { first_line, last_line } 1-based, from a command range
function M.explain(range)
  local bufnr = api.nvim_get_current_buf()
  local client = M.client(bufnr)
  if not client then
    return
  end
  local args ---@type table
  if range then
    local last = api.nvim_buf_get_lines(bufnr, range[2] - 1, range[2], false)[1] or ''
    local params = vim.lsp.util.make_given_range_params(
      { range[1], 0 },
      { range[2], math.max(#last - 1, 0) },
      bufnr,
      client.offset_encoding
    )
    args = { uri = params.textDocument.uri, range = params.range }
  else
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    args = { uri = params.textDocument.uri, position = params.position }
  end
  M.execute('mmx.explain', args, function(result)
    if type(result) ~= 'table' then
      status.notify(vim.log.levels.WARN, 'mmx.explain returned no decision')
      return
    end
    M.float(M.decision_lines(result), 'markdown', 'mmx_explain')
  end, bufnr)
end

--- Aligns rows of cells into text columns; numbers right-aligned.
---@param rows string[][]
---@return string[]
local function table_lines(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, vim.fn.strdisplaywidth(cell))
    end
  end
  local out = {}
  for r, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      local pad = (' '):rep(widths[i] - vim.fn.strdisplaywidth(cell))
      cells[i] = (i <= 2 or r == 1) and (cell .. pad) or (pad .. cell)
    end
    table.insert(out, (table.concat(cells, '  '):gsub('%s+$', '')))
    if r == 1 then
      local rule = {}
      for i = 1, #row do
        rule[i] = ('─'):rep(widths[i])
      end
      table.insert(out, table.concat(rule, '  '))
    end
  end
  return out
end

---@param usd any
---@return string
local function money(usd)
  return type(usd) == 'number' and status.format_usd(usd) or show(usd)
end

--- The `mmx.stats` summary as text lines.
---@param s table
---@return string[]
function M.stats_lines(s)
  local totals = type(s.totals) == 'table' and s.totals or s
  local lines = {
    ('mmx: %s requests · cost %s · saved %s · %s cache hits'):format(
      show(totals.requests),
      money(totals.cost_usd),
      money(totals.saved_usd),
      show(totals.cache_hits)
    ),
    '',
  }
  local rows = { { 'model', 'tier', 'req', 'hits', 'in tok', 'out tok', 'cost', 'p50 ms', 'p95 ms', 'acc', 'rej' } }
  for _, m in ipairs(type(s.by_model) == 'table' and s.by_model or {}) do
    table.insert(rows, {
      show(m.model),
      show(m.tier),
      show(m.requests),
      show(m.cache_hits),
      show(m.input_tokens),
      show(m.output_tokens),
      money(m.cost_usd),
      show(m.p50_ms),
      show(m.p95_ms),
      show(m.accepted),
      show(m.rejected),
    })
  end
  if #rows == 1 then
    table.insert(lines, 'no requests recorded yet')
    return lines
  end
  vim.list_extend(lines, table_lines(rows))
  return lines
end

--- `:Mmx stats [since]`
---@param since? string
function M.stats(since)
  M.execute('mmx.stats', since and { since = since } or vim.empty_dict(), function(result)
    if type(result) ~= 'table' then
      status.notify(vim.log.levels.WARN, 'mmx.stats returned nothing')
      return
    end
    M.float(M.stats_lines(result), '', 'mmx_stats')
  end)
end

--- `:Mmx actions`: the assistant code actions (titles with tier and cost come from the server).
function M.actions()
  vim.lsp.buf.code_action({
    filter = function(action, client_id)
      local client = vim.lsp.get_client_by_id(client_id)
      return (client and client.name == 'mmx') or (type(action.kind) == 'string' and action.kind:find('mmx', 1, true))
    end,
  })
end

--- `lsp.Handler` for `mmx/explanation`: the answer of an explain action, in a float.
---@param err? lsp.ResponseError
---@param params any
function M.explanation_handler(err, params)
  if err or type(params) ~= 'table' or type(params.markdown) ~= 'string' then
    status.log(vim.log.levels.WARN, 'ignored a malformed mmx/explanation')
    return
  end
  status.log(vim.log.levels.INFO, 'explanation for ' .. tostring(params.request_id))
  vim.schedule(function()
    M.float(vim.split(params.markdown, '\n', { plain = true }), 'markdown', 'mmx_explanation')
  end)
end

return M
