--- mmx for Neovim: starts mmx-lsp for the supported filetypes and wires ghost text, the
--- statusline, the tier override and the `:Mmx` command.
local config = require('mmx.config')
local status = require('mmx.status')

local M = {}

M.NAME = 'mmx'

--- True once setup() succeeded: from then on the settings come from the options.
M.configured = false

--- The `vim.lsp.Config` fields that come from the options.
---@return vim.lsp.Config
function M.lsp_config()
  local values = config.values
  return {
    cmd = config.cmd(values.server),
    filetypes = values.filetypes,
    root_markers = values.root_markers,
    init_options = config.wire(values.settings),
    settings = { mmx = config.wire(values.settings) },
  }
end

local function define_highlights()
  vim.api.nvim_set_hl(0, 'MmxGhostText', { link = 'Comment', default = true })
end

--- Sets the plugin up. Bad options are reported and leave the plugin as it was.
---@param opts? mmx.Opts
---@return boolean ok
function M.setup(opts)
  if vim.fn.has('nvim-0.11') ~= 1 then
    status.notify(vim.log.levels.ERROR, 'mmx needs Neovim 0.11 or newer (vim.lsp.config, vim.lsp.enable)')
    return false
  end
  local ok, err = config.set(opts)
  if not ok then
    status.notify(vim.log.levels.ERROR, 'invalid options: ' .. tostring(err) .. ' (see :help mmx-options)')
    return false
  end
  define_highlights()
  local cfg = M.lsp_config()
  vim.lsp.config(M.NAME, cfg)

  local exe = cfg.cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    status.notify(
      vim.log.levels.ERROR,
      ('server executable %q not found: install mmx-lsp (pip install mmx-lsp) or set server.path or server.python; see :checkhealth mmx'):format(
        exe
      )
    )
    return false
  end

  M.configured = true
  vim.lsp.enable(M.NAME)
  M.push_settings()
  return true
end

--- `before_init`: vim.lsp.config() merges tables over calls, so a key dropped from the settings
--- would live on in `init_options`; the server gets exactly the current settings instead.
---@param params lsp.InitializeParams
function M.before_init(params)
  if M.configured then
    params.initializationOptions = config.wire(config.values.settings)
  end
end

--- `on_init`: the same for the settings a new client pushes and answers
--- `workspace/configuration` with.
---@param client vim.lsp.Client
function M.on_init(client)
  require('mmx.watch').start(client)
  if not M.configured then
    return
  end
  local settings = { mmx = config.wire(config.values.settings) }
  local changed = not vim.deep_equal(client.settings, settings)
  client.settings = settings -- an empty section stays an object in workspace/configuration
  if changed then
    client:notify('workspace/didChangeConfiguration', { settings = client.settings })
  end
end

--- Sends the current settings to running servers (`workspace/didChangeConfiguration`).
function M.push_settings()
  local settings = config.wire(config.values.settings)
  for _, client in ipairs(vim.lsp.get_clients({ name = M.NAME })) do
    client.settings = { mmx = settings }
    client:notify('workspace/didChangeConfiguration', { settings = { mmx = settings } })
  end
end

--- Replaces the `mmx` settings (providers, tiers, routing…) and tells running servers.
---@param settings table<string, any>
---@return boolean ok
function M.update_settings(settings)
  local ok, err = pcall(vim.validate, 'settings', settings, 'table')
  if not ok then
    status.notify(vim.log.levels.ERROR, 'invalid settings: ' .. tostring(err):gsub('^.-:%d+: ', ''))
    return false
  end
  config.values.settings = settings
  vim.lsp.config(M.NAME, { init_options = config.wire(settings), settings = { mmx = config.wire(settings) } })
  M.push_settings()
  return true
end

--- Called by the client for each buffer it attaches to.
---@param client vim.lsp.Client
---@param bufnr integer
function M.on_attach(client, bufnr)
  status.log(vim.log.levels.INFO, ('attached to buffer %d (%s)'):format(bufnr, vim.api.nvim_buf_get_name(bufnr)))
  require('mmx.inline').attach(client, bufnr)
end

--- Called when the server process ends.
---@param code integer
---@param signal integer
---@param client_id integer
function M.on_exit(code, signal, client_id)
  -- Called in a fast event: everything waits for the main loop.
  require('mmx.watch').stop(client_id)
  vim.schedule(function()
    local inline = require('mmx.inline')
    for bufnr, st in pairs(inline.states) do
      if st.client_id == client_id then
        inline.detach(bufnr)
      end
    end
    status.reset()
    pcall(vim.cmd.redrawstatus)
    if code ~= 0 or (signal ~= 0 and signal ~= 15) then
      -- Quiet: this can happen while typing.
      status.quiet(
        ('server-exit:%d:%d'):format(code, signal),
        vim.log.levels.ERROR,
        ('the server stopped (exit code %d, signal %d): no ghost text until it runs again (:Mmx restart, :Mmx log, :checkhealth mmx)'):format(
          code,
          signal
        )
      )
    else
      status.log(vim.log.levels.INFO, 'the server stopped')
    end
  end)
end

--- The statusline text, e.g. `cheap · gpt-5-mini · $0.0003 (today $0.42)`.
---@return string
function M.statusline()
  return status.statusline()
end

--- Stops and starts the server again for the open buffers.
function M.restart()
  vim.lsp.enable(M.NAME, false)
  vim.defer_fn(function()
    vim.lsp.enable(M.NAME, true)
  end, 500)
end

---@type table<string, fun(args: string[], cmd: vim.api.keyset.create_user_command.command_args)>
local subcommands = {
  tier = function(args)
    require('mmx.commands').set_tier(args[1], args[2])
  end,
  explain = function(_, cmd)
    require('mmx.commands').explain(cmd.range > 0 and { cmd.line1, cmd.line2 } or nil)
  end,
  stats = function(args)
    require('mmx.commands').stats(args[1])
  end,
  actions = function()
    require('mmx.commands').actions()
  end,
  log = function()
    status.open_log()
  end,
  status = function()
    local line = status.statusline()
    vim.notify(line ~= '' and ('mmx: ' .. line) or 'mmx: no request routed yet', vim.log.levels.INFO)
  end,
  restart = function()
    M.restart()
  end,
}

--- Runs `:Mmx {subcommand} …`.
---@param cmd vim.api.keyset.create_user_command.command_args
function M.command(cmd)
  local args = vim.deepcopy(cmd.fargs)
  local name = table.remove(args, 1) or 'status'
  local fn = subcommands[name]
  if not fn then
    local names = vim.tbl_keys(subcommands)
    table.sort(names)
    status.notify(vim.log.levels.ERROR, ('unknown subcommand %q (%s)'):format(name, table.concat(names, ', ')))
    return
  end
  fn(args, cmd)
end

--- Completion for `:Mmx`.
---@param arglead string
---@param cmdline string
---@return string[]
function M.complete(arglead, cmdline)
  -- Drop a range ('<,'> or 1,2) before the command name.
  local words = vim.split(vim.trim((cmdline:gsub('^%A*', ''))), '%s+')
  local n = #words - (arglead == '' and 0 or 1)
  local candidates ---@type string[]
  if n <= 1 then
    candidates = vim.tbl_keys(subcommands)
    table.sort(candidates)
  elseif words[2] == 'tier' and n == 2 then
    candidates = { 'premium', 'cheap', 'auto' }
  elseif words[2] == 'tier' and n == 3 then
    candidates = { 'next', 'file', 'session' }
  else
    candidates = {}
  end
  return vim.tbl_filter(function(c)
    return vim.startswith(c, arglead)
  end, candidates)
end

return M
