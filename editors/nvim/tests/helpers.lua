--- A small harness for scenario scripts run as `nvim --headless --clean -c 'luafile X.lua'`:
--- the scenario runs in a coroutine so that typed keys are processed between its steps.
local M = {}

M.env = {
  plugin = assert(os.getenv('MMX_TEST_PLUGIN'), 'MMX_TEST_PLUGIN is not set'),
  server = vim.json.decode(os.getenv('MMX_TEST_SERVER_CMD') or '["mmx-lsp"]'),
  stub_url = os.getenv('MMX_TEST_STUB_URL') or 'http://127.0.0.1:9/v1',
  workdir = os.getenv('MMX_TEST_WORKDIR') or vim.fn.getcwd(),
  timeout_ms = tonumber(os.getenv('MMX_TEST_TIMEOUT_MS') or '60000'),
}

---@type {message: string, level: integer}[]
M.notifications = {}

---@type table[] Every `mmx/status` the plugin accepted, in order (from the `User MmxStatus` event).
M.statuses = {}

---@param fmt string
function M.log(fmt, ...)
  local line = ('[%s] '):format(os.date('%H:%M:%S')) .. fmt:format(...) .. '\n'
  local file = os.getenv('MMX_TEST_LOG') -- in a terminal (tmux) the screen is not a log
  if file then
    local f = assert(io.open(file, 'a'))
    f:write(line)
    f:close()
  else
    io.stderr:write(line)
  end
end

local finished = false

---@param msg string
function M.fail(msg)
  if finished then
    return
  end
  finished = true
  M.log('FAIL: %s', msg)
  for _, n in ipairs(M.notifications) do
    M.log('  notification [%d] %s', n.level, n.message)
  end
  local ok, status = pcall(require, 'mmx.status')
  if ok then
    for _, n in ipairs(status.shown) do
      M.log('  shown [%d] %s', n.level, n.message)
    end
    for _, e in ipairs(status.entries) do
      M.log('  mmx log [%d] %s', e.level, e.message)
    end
  end
  vim.cmd('cq')
end

---@param name string
function M.pass(name)
  if finished then
    return
  end
  finished = true
  M.log('PASS: %s', name)
  vim.cmd('qa!')
end

--- Suspends the scenario for `ms` milliseconds while Neovim runs.
---@param ms integer
function M.sleep(ms)
  local co = assert(coroutine.running(), 'sleep outside a scenario')
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      M.fail(debug.traceback(co, err))
    end
  end, ms)
  coroutine.yield()
end

--- Waits until `pred()` is truthy; fails the scenario with `what` after `ms`.
---@param ms integer
---@param pred fun(): any
---@param what string
---@return any
function M.wait(ms, pred, what)
  local deadline = vim.uv.now() + ms
  while true do
    local v = pred()
    if v then
      return v
    end
    if vim.uv.now() > deadline then
      error('timed out waiting for ' .. what, 2)
    end
    M.sleep(20)
  end
end

---@param cond any
---@param msg string
function M.ok(cond, msg)
  if not cond then
    error('assertion failed: ' .. msg, 2)
  end
end

---@param got any
---@param want any
---@param msg string
function M.eq(got, want, msg)
  if not vim.deep_equal(got, want) then
    error(('%s: expected %s, got %s'):format(msg, vim.inspect(want), vim.inspect(got)), 2)
  end
end

--- Types keys as a user would (processed by Neovim's input loop).
---@param keys string
function M.feed(keys)
  vim.api.nvim_input(keys)
  M.sleep(40)
end

--- The first notification (vim.notify, or a message the plugin showed in the message area)
--- whose message matches `pattern`.
---@param pattern string
---@return {message: string, level: integer}?
function M.notified(pattern)
  for _, n in ipairs(M.notifications) do
    if n.message:find(pattern) then
      return n
    end
  end
  local status = package.loaded['mmx.status']
  for _, n in ipairs(status and status.shown or {}) do
    if n.message:find(pattern) then
      return n
    end
  end
end

--- The messages the plugin showed in the message area (status.shown) matching `pattern`.
---@param pattern string
---@return table[]
function M.shown(pattern)
  local status = package.loaded['mmx.status']
  return vim.tbl_filter(function(n)
    return n.message:find(pattern) ~= nil
  end, status and status.shown or {})
end

--- Puts the plugin on 'runtimepath' as a plugin manager would and loads plugin/.
function M.load_plugin()
  vim.opt.runtimepath:prepend(M.env.plugin)
  vim.cmd.runtime('plugin/mmx.lua')
end

--- Settings for the real server, pointing both tiers at the loopback stub.
---@return table
function M.settings()
  return {
    providers = { stub = { base_url = M.env.stub_url, api_key_env = 'MMX_STUB_KEY' } },
    tiers = {
      cheap = { provider = 'stub', model = 'stub-cheap', input_usd_per_mtok = 0.25, output_usd_per_mtok = 2.0 },
      premium = { provider = 'stub', model = 'stub-premium', input_usd_per_mtok = 5.0, output_usd_per_mtok = 20.0 },
    },
    cache = { backend = 'disk' },
    -- The fixed weighted score: which tier a small completion gets is not what these
    -- scenarios test, and the learned router weighs it against the stub's prices.
    routing = { router = 'weights' },
  }
end

--- Default options for `require('mmx').setup()` in the scenarios.
---@param extra? table
---@return table
function M.opts(extra)
  local server = { path = M.env.server[1], args = vim.list_slice(M.env.server, 2) }
  return vim.tbl_deep_extend('force', { server = server, settings = M.settings() }, extra or {})
end

--- Writes `lines` to a file in the work dir and opens it.
---@param name string
---@param lines string[]
---@return integer bufnr
function M.open(name, lines)
  local path = M.env.workdir .. '/' .. name
  vim.fn.writefile(lines, path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  return vim.api.nvim_get_current_buf()
end

--- Waits for the mmx client to attach to `bufnr` and finish initializing.
---@param bufnr integer
---@return vim.lsp.Client
function M.attached(bufnr)
  return M.wait(30000, function()
    local c = vim.lsp.get_clients({ name = 'mmx', bufnr = bufnr })[1]
    return c and c.initialized and c
  end, 'the mmx client to attach')
end

--- Runs a server command synchronously from the scenario.
---@param client vim.lsp.Client
---@param command string
---@param args table
---@return any result
function M.execute(client, command, args)
  local done, result, err = false, nil, nil
  client:request('workspace/executeCommand', { command = command, arguments = { args } }, function(e, r)
    done, result, err = true, r, e
  end)
  M.wait(10000, function()
    return done
  end, command)
  if err then
    error(command .. ' failed: ' .. vim.inspect(err), 2)
  end
  return result
end

--- The ghost text drawn in a buffer (either namespace), as one string, or nil; and the name of
--- the namespace it is in (`mmx.inline` on 0.11, Neovim's own on 0.12+).
---@param bufnr integer
---@return string?
---@return string?
function M.ghost_text(bufnr)
  local namespaces = vim.api.nvim_get_namespaces()
  for _, name in ipairs({ 'mmx.inline', 'nvim.lsp.inline_completion' }) do
    local ns = namespaces[name]
    if ns then
      for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })) do
        local parts = {}
        for _, chunk in ipairs(mark[4].virt_text or {}) do
          table.insert(parts, chunk[1])
        end
        for _, line in ipairs(mark[4].virt_lines or {}) do
          table.insert(parts, '\n')
          for _, chunk in ipairs(line) do
            table.insert(parts, chunk[1])
          end
        end
        local text = table.concat(parts)
        if text ~= '' then
          return text, name
        end
      end
    end
  end
  return nil
end

--- Types `keys` in Insert mode and waits for the status of the request they cause.
---@param keys string
---@param what string
---@return table status
function M.type_for_status(keys, what)
  local n = #M.statuses
  M.feed(keys)
  return M.wait(20000, function()
    return M.statuses[n + 1]
  end, 'the status of ' .. what)
end

--- Waits for ghost text in `bufnr` and returns it.
---@param bufnr integer
---@return string
function M.wait_ghost(bufnr)
  return M.wait(20000, function()
    return M.ghost_text(bufnr)
  end, 'ghost text')
end

--- Records the `workspace/executeCommand` requests the client sends and the server's answers.
---@param client vim.lsp.Client
---@return {command: string, arguments: any, result?: any, err?: any, done: boolean}[]
function M.record_commands(client)
  local sent = {}
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method ~= 'workspace/executeCommand' then
      return request(self, method, params, handler, bufnr)
    end
    local entry = { command = params.command, arguments = params.arguments, done = false }
    table.insert(sent, entry)
    return request(self, method, params, function(err, result, ...)
      entry.err, entry.result, entry.done = err, result, true
      if handler then
        return handler(err, result, ...)
      end
    end, bufnr)
  end
  return sent
end

--- Waits for the server's answer to a recorded `command` and returns the entry.
---@param sent table[] from record_commands()
---@param command string
---@return table
function M.wait_command(sent, command)
  return M.wait(10000, function()
    for _, e in ipairs(sent) do
      if e.command == command and e.done then
        return e
      end
    end
  end, 'the answer to ' .. command)
end

--- Waits for the `mmx/status` of the request `request_id` and returns it.
---@param request_id string
---@return table
function M.wait_status(request_id)
  return M.wait(10000, function()
    for _, st in ipairs(M.statuses) do
      if st.request_id == request_id then
        return st
      end
    end
  end, 'the status of request ' .. tostring(request_id))
end

--- Sums a column of `mmx.stats` over its models.
---@param client vim.lsp.Client
---@param column string
---@return integer
function M.stats_sum(client, column)
  local stats = M.execute(client, 'mmx.stats', vim.empty_dict())
  local n = 0
  for _, row in ipairs(stats.by_model or {}) do
    n = n + (tonumber(row[column]) or 0)
  end
  return n
end

--- Runs a scenario; exits 0 when it returns, 1 on any error or after the timeout.
---@param name string
---@param fn fun()
function M.run(name, fn)
  vim.notify = function(msg, level)
    table.insert(M.notifications, { message = tostring(msg), level = level or vim.log.levels.INFO })
    M.log('notify [%s] %s', tostring(level), tostring(msg))
  end
  -- Neovim writes most window/showMessage text straight out, past vim.notify: record it too.
  local show_message = vim.lsp.handlers['window/showMessage']
  vim.lsp.handlers['window/showMessage'] = function(err, params, ctx)
    if type(params) == 'table' then
      local levels = { vim.log.levels.ERROR, vim.log.levels.WARN, vim.log.levels.INFO, vim.log.levels.DEBUG }
      local message = 'showMessage: ' .. tostring(params.message)
      table.insert(M.notifications, { message = message, level = levels[params.type] or vim.log.levels.INFO })
      M.log('%s', message)
    end
    return show_message(err, params, ctx)
  end
  vim.api.nvim_create_autocmd('User', {
    pattern = 'MmxStatus',
    callback = function(ev)
      table.insert(M.statuses, ev.data)
    end,
  })
  vim.defer_fn(function()
    M.fail(('%s: no result after %d ms'):format(name, M.env.timeout_ms))
  end, M.env.timeout_ms)
  local co = coroutine.create(function()
    fn()
    M.pass(name)
  end)
  local ok, err = coroutine.resume(co)
  if not ok then
    M.fail(debug.traceback(co, err))
  end
end

return M
