--- What the server said about the last routed request: the statusline, errors and `:Mmx log`.
local config = require('mmx.config')

local M = {}

---@class mmx.Status
---@field request_id string
---@field kind? string
---@field tier string
---@field model? string
---@field reason? string
---@field cached? boolean
---@field escalated? boolean
---@field latency_ms? number
---@field input_tokens? integer
---@field output_tokens? integer
---@field cost_usd? number
---@field saved_usd? number
---@field session_cost_usd? number
---@field budget_left_usd? number|vim.NIL
---@field error? string

---@class mmx.LogEntry
---@field time string
---@field level integer vim.log.levels
---@field message string

---@type mmx.Status?
M.last = nil

---@type mmx.LogEntry[]
M.entries = {}

--- Appends a line to the plugin's log (`:Mmx log`), dropping the oldest past `status.log_size`.
---@param level integer vim.log.levels
---@param message string
function M.log(level, message)
  table.insert(M.entries, {
    time = os.date('%H:%M:%S') --[[@as string]],
    level = level,
    message = message,
  })
  local max = config.values.status.log_size or 200
  while #M.entries > max do
    table.remove(M.entries, 1)
  end
end

--- Logs and shows a message to the user.
---@param level integer vim.log.levels
---@param message string
function M.notify(level, message)
  M.log(level, message)
  vim.notify('mmx: ' .. message, level, { title = 'mmx' })
end

--- Formats dollars: cents from a cent up; below, four decimals or as many as the first
--- significant digit needs (at most six), so that a tiny cost never reads as $0.0000.
---@param usd number
---@return string
function M.format_usd(usd)
  if usd == 0 or usd >= 0.01 or usd ~= usd then
    return ('$%.2f'):format(usd)
  end
  local decimals = math.min(6, math.max(4, -math.floor(math.log10(math.abs(usd)))))
  return ('$%.' .. decimals .. 'f'):format(usd)
end

---@param v any
---@return boolean
local function is_opt_number(v)
  return v == nil or v == vim.NIL or type(v) == 'number'
end

--- Checks the shape of an `mmx/status` payload.
---@param s any
---@return string? problem nil when the payload is usable
function M.check(s)
  if type(s) ~= 'table' then
    return ('expected an object, got %s'):format(type(s))
  end
  if type(s.tier) ~= 'string' then
    return ('field "tier": expected a string, got %s'):format(type(s.tier))
  end
  if s.model ~= nil and s.model ~= vim.NIL and type(s.model) ~= 'string' then
    return ('field "model": expected a string, got %s'):format(type(s.model))
  end
  for _, key in ipairs({ 'cost_usd', 'session_cost_usd', 'saved_usd', 'latency_ms' }) do
    if not is_opt_number(s[key]) then
      return ('field "%s": expected a number, got %s'):format(key, type(s[key]))
    end
  end
  if s.error ~= nil and s.error ~= vim.NIL and type(s.error) ~= 'string' then
    return ('field "error": expected a string, got %s'):format(type(s.error))
  end
  return nil
end

---@param s mmx.Status
---@return string
local function describe(s)
  local parts = { ('%s %s'):format(s.kind or 'request', s.tier) }
  if type(s.model) == 'string' then
    table.insert(parts, s.model)
  end
  if type(s.cost_usd) == 'number' then
    table.insert(parts, M.format_usd(s.cost_usd))
  end
  if s.cached == true then
    table.insert(parts, 'cached')
  end
  if s.escalated == true then
    table.insert(parts, 'escalated')
  end
  if type(s.latency_ms) == 'number' then
    table.insert(parts, ('%d ms'):format(s.latency_ms))
  end
  if type(s.reason) == 'string' then
    table.insert(parts, s.reason)
  end
  return table.concat(parts, ' · ')
end

--- `lsp.Handler` for the `mmx/status` notification.
---@param err? lsp.ResponseError
---@param params any
function M.handler(err, params)
  if err then
    M.log(vim.log.levels.ERROR, 'mmx/status: ' .. vim.inspect(err))
    return
  end
  local problem = M.check(params)
  if problem then
    M.log(vim.log.levels.WARN, 'ignored a malformed mmx/status (' .. problem .. ')')
    vim.notify_once('mmx: ignored a malformed mmx/status notification (' .. problem .. ')', vim.log.levels.WARN)
    return
  end
  ---@cast params mmx.Status
  M.last = params
  if type(params.error) == 'string' then
    M.log(vim.log.levels.ERROR, describe(params) .. ' · error: ' .. params.error)
    if config.values.status.notify_errors then
      vim.notify(
        ('mmx: %s request on %s failed: %s'):format(params.kind or 'a', params.tier, params.error),
        vim.log.levels.ERROR,
        { title = 'mmx' }
      )
    end
  else
    M.log(vim.log.levels.INFO, describe(params))
  end
  vim.api.nvim_exec_autocmds('User', { pattern = 'MmxStatus', data = params, modeline = false })
  pcall(vim.cmd.redrawstatus)
end

--- `lsp.Handler` for `window/logMessage`: keeps the server's lines for `:Mmx log` too.
---@param err? lsp.ResponseError
---@param params lsp.LogMessageParams
---@param ctx lsp.HandlerContext
function M.log_message_handler(err, params, ctx)
  if type(params) == 'table' and type(params.message) == 'string' then
    local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
    M.log(levels[params.type] or vim.log.levels.INFO, 'server: ' .. params.message)
  end
  return vim.lsp.handlers['window/logMessage'](err, params, ctx)
end

--- The statusline text, e.g. `cheap · gpt-5-mini · $0.0003 (today $0.42)`; empty before the
--- first request.
---@return string
function M.statusline()
  local s = M.last
  if not s then
    return ''
  end
  local parts = { s.tier }
  if type(s.model) == 'string' and s.model ~= '' then
    table.insert(parts, s.model)
  end
  if type(s.error) == 'string' then
    table.insert(parts, 'error')
    return table.concat(parts, ' · ')
  end
  local cost = type(s.cost_usd) == 'number' and M.format_usd(s.cost_usd) or '$?'
  if s.cached == true then
    cost = cost .. ' cached'
  end
  if type(s.session_cost_usd) == 'number' then
    cost = ('%s (today %s)'):format(cost, M.format_usd(s.session_cost_usd))
  end
  table.insert(parts, cost)
  return table.concat(parts, ' · ')
end

--- A lualine component: `sections = { lualine_x = { require('mmx.status').lualine() } }`.
---@return table
function M.lualine()
  return {
    M.statusline,
    cond = function()
      return M.last ~= nil
    end,
  }
end

--- Opens the plugin's log in a scratch buffer.
function M.open_log()
  local lines = {}
  local names = { [0] = 'TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'OFF' }
  for _, e in ipairs(M.entries) do
    for i, line in ipairs(vim.split(e.message, '\n', { plain = true })) do
      local prefix = i == 1 and ('%s %-5s '):format(e.time, names[e.level] or '?') or (' '):rep(15)
      table.insert(lines, prefix .. line)
    end
  end
  if #lines == 0 then
    lines = { 'mmx: nothing logged yet' }
  end
  vim.cmd('botright new')
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  pcall(vim.api.nvim_buf_set_name, buf, 'mmx://log')
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].filetype = 'mmxlog'
end

--- Forgets the last status (a new server session).
function M.reset()
  M.last = nil
end

return M
