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
---@field usage_estimated? boolean tokens (and so cost_usd) are estimates
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

--- A kind of failure is shown at most once in this many milliseconds (the statusline and
--- `:Mmx log` carry every occurrence).
M.QUIET_MS = 60000
--- A work-done report that runs longer than this shows in the message area.
M.LONG_MS = 1000

---@class mmx.Shown
---@field message string the whole message (`:Mmx log` has it too)
---@field line string what the message area showed: one line that fits
---@field level integer vim.log.levels
---@field kind? string the kind of failure, for a failure

---@type mmx.Shown[] Messages shown in the message area, oldest first (for tests and :Mmx log).
M.shown = {}

---@type table<string, integer> kind of failure -> when it was last shown (uv.now() ms)
M.last_shown = {}

---@class mmx.Progress
---@field title string
---@field message? string
---@field percentage? integer
---@field started integer uv.now() ms
---@field echoed boolean

---@type table<string, mmx.Progress> work-done reports of the server in progress, by token
M.progress = {}

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

--- Logs and shows a message to the user (for what they just asked: a command, setup()).
---@param level integer vim.log.levels
---@param message string
function M.notify(level, message)
  M.log(level, message)
  vim.notify('mmx: ' .. message, level, { title = 'mmx' })
end

---@type {level: integer, message: string, kind?: string}?
local pending = nil
local echo_timer = nil ---@type uv.uv_timer_t?

--- One line that fits the message area, so that showing it never asks to press ENTER.
---@param text string
---@return string
function M.one_line(text)
  local line = vim.trim((text:gsub('%s*\n%s*', ' ')))
  local width = math.max(20, (tonumber(vim.v.echospace) or 60) - 1)
  if vim.fn.strdisplaywidth(line) > width then
    line = vim.fn.strcharpart(line, 0, width - 1) .. '…'
  end
  return line
end

local function flush()
  local p = pending
  pending = nil
  if not p then
    return
  end
  local mode = vim.api.nvim_get_mode()
  if mode.blocking or mode.mode:match('^[cr]') then
    return -- the command line or a prompt is in use: the statusline and the log have it
  end
  local line = M.one_line(p.message)
  table.insert(M.shown, { message = p.message, line = line, level = p.level, kind = p.kind })
  local hl = ({ [vim.log.levels.ERROR] = 'ErrorMsg', [vim.log.levels.WARN] = 'WarningMsg' })[p.level]
  -- One short line, never two in a row: that is what makes Neovim ask to press ENTER.
  vim.api.nvim_echo({ { line, hl } }, true, {})
end

--- Shows a message in the message area without ever blocking: one line, the latest of the
--- messages that arrive within 100 ms (earlier ones only go to the log).
---@param level integer vim.log.levels
---@param message string
---@param kind? string
function M.echo(level, message, kind)
  pending = { level = level, message = message, kind = kind }
  if echo_timer then
    return
  end
  echo_timer = vim.defer_fn(function()
    echo_timer = nil
    flush()
  end, 100)
end

--- Logs a failure and shows it (quietly, see echo) unless the same kind of failure was shown
--- less than a minute ago.
---@param kind string
---@param level integer vim.log.levels
---@param message string
---@return boolean shown
function M.quiet(kind, level, message)
  M.log(level, message)
  local now = vim.uv.now()
  local last = M.last_shown[kind]
  if last and now - last < M.QUIET_MS then
    return false
  end
  M.last_shown[kind] = now
  M.echo(level, 'mmx: ' .. message, kind)
  return true
end

--- A kind for a message: its text without numbers (the same failure at another time or
--- with another count is the same kind).
---@param message string
---@return string
function M.kind_of(message)
  return (message:gsub('%d+', '#'):sub(1, 120))
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
    table.insert(parts, (s.usage_estimated == true and '≈' or '') .. M.format_usd(s.cost_usd))
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
    if config.values.status.notify_errors and params.error ~= 'cancelled' and params.error ~= 'superseded' then
      -- One kind per tier: its failures read differently as they go on (an HTTP error, then
      -- "skipped for 30 s after 3 failures"), but they are one failure to the user.
      M.quiet(
        'request:' .. tostring(params.tier),
        vim.log.levels.ERROR,
        ('%s request on %s failed: %s'):format(params.kind or 'a', params.tier, params.error)
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

--- `lsp.Handler` for `window/showMessage` from the server: failures and notices go to the log
--- and, at most once a minute per kind, to the message area, never as a prompt.
---@param err? lsp.ResponseError
---@param params lsp.ShowMessageParams
function M.show_message_handler(err, params)
  if err or type(params) ~= 'table' or type(params.message) ~= 'string' then
    return
  end
  local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
  local level = levels[params.type] or vim.log.levels.INFO
  local text = params.message:gsub('^mmx:%s*', '')
  M.quiet('server:' .. M.kind_of(text), level, text)
  pcall(vim.cmd.redrawstatus)
end

---@param p mmx.Progress
---@return string
local function progress_text(p)
  local seconds = math.floor((vim.uv.now() - p.started) / 1000)
  local text = p.title:gsub('^mmx:%s*', '')
  if p.message and p.message ~= '' then
    text = text .. ' — ' .. p.message
  end
  -- The time first: a long title is cut at the end of the line.
  return ('⋯ %d s · %s'):format(seconds, text)
end

local progress_timer = nil ---@type uv.uv_timer_t?

--- Shows the reports that run long in the message area, once a second while they run.
local function tick()
  local long = nil ---@type mmx.Progress?
  local now = vim.uv.now()
  for _, p in pairs(M.progress) do
    if now - p.started >= M.LONG_MS and (not long or p.started < long.started) then
      long = p
    end
  end
  if long then
    long.echoed = true
    M.echo(vim.log.levels.INFO, 'mmx: ' .. progress_text(long))
    pcall(vim.cmd.redrawstatus)
  end
  if next(M.progress) == nil and progress_timer then
    progress_timer:stop()
    progress_timer:close()
    progress_timer = nil
  end
end

--- The `$/progress` work-done reports of the mmx server (from the `LspProgress` event):
--- shown in the statusline, and in the message area when they run longer than a second.
---@param token string|integer
---@param value table lsp.WorkDoneProgressBegin|Report|End
function M.on_progress(token, value)
  if type(value) ~= 'table' then
    return
  end
  local key = tostring(token)
  if value.kind == 'begin' then
    M.progress[key] = {
      title = tostring(value.title or 'mmx'),
      message = value.message,
      percentage = value.percentage,
      started = vim.uv.now(),
      echoed = false,
    }
    if not progress_timer then
      progress_timer = assert(vim.uv.new_timer())
      progress_timer:start(M.LONG_MS, 1000, vim.schedule_wrap(tick))
    end
  elseif value.kind == 'report' and M.progress[key] then
    M.progress[key].message = value.message or M.progress[key].message
    M.progress[key].percentage = value.percentage or M.progress[key].percentage
  elseif value.kind == 'end' then
    local p = M.progress[key]
    M.progress[key] = nil
    if p and p.echoed and type(value.message) == 'string' then
      M.echo(vim.log.levels.INFO, value.message)
    end
  end
  pcall(vim.cmd.redrawstatus)
end

--- The statusline text, e.g. `cheap · gpt-5-mini · $0.0003 (today $0.42)`; empty before the
--- first request. While a long request runs: `⋯ 12 s · Refactor selection — asking cheap`.
---@return string
function M.statusline()
  local running = nil ---@type mmx.Progress?
  for _, p in pairs(M.progress) do
    if p.title ~= 'mmx' and (not running or p.started < running.started) then
      running = p
    end
  end
  if running then
    return progress_text(running)
  end
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
  if s.usage_estimated == true then
    cost = '≈' .. cost -- billed on estimated tokens: the endpoint reported no usage
  end
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

--- Forgets the last status and the reports in progress (a new server session).
function M.reset()
  M.last = nil
  M.progress = {}
end

return M
