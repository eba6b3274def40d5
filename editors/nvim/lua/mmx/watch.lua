--- Tells the server when a settings file changes (`workspace/didChangeWatchedFiles`), so that
--- an edit of mmx.toml, pyproject.toml or the user's config.toml applies without a restart.
---
--- Neovim does not offer file watching to servers on Linux, so the plugin watches the few files
--- the server reads itself: one non-recursive watch per folder.
local status = require('mmx.status')

local M = {}

local uv = vim.uv
local CHANGED, DELETED = 2, 3
local SETTLE_MS = 100

---@class mmx.watch.Watches
---@field events uv.uv_fs_event_t[]
---@field timers table<string, uv.uv_timer_t> path -> its settle timer

---@type table<integer, mmx.watch.Watches> client id -> its watches
M.watches = {}

--- The folder of the server's user config file (platformdirs' user_config_dir("mmx")).
---@return string?
function M.user_config_dir()
  local home = vim.env.HOME or ''
  if vim.fn.has('win32') == 1 then
    local base = vim.env.LOCALAPPDATA
    return base and (base .. '\\mmx') or nil
  elseif vim.fn.has('mac') == 1 then
    return home .. '/Library/Application Support/mmx'
  end
  local base = vim.env.XDG_CONFIG_HOME
  if base == nil or base == '' then
    base = home .. '/.config'
  end
  return base .. '/mmx'
end

--- Folder -> the names in it that hold settings, for a client.
---@param client vim.lsp.Client
---@return table<string, table<string, true>>
local function places(client)
  local found = {}
  local roots = {}
  for _, folder in ipairs(client.workspace_folders or {}) do
    table.insert(roots, vim.uri_to_fname(folder.uri))
  end
  if #roots == 0 and client.root_dir then
    roots = { client.root_dir }
  end
  for _, root in ipairs(roots) do
    found[root] = { ['mmx.toml'] = true, ['pyproject.toml'] = true }
  end
  local user = M.user_config_dir()
  if user then
    found[user] = vim.tbl_extend('force', found[user] or {}, { ['config.toml'] = true })
  end
  return found
end

--- Starts watching the settings files of a client's workspace and of the user.
---@param client vim.lsp.Client
function M.start(client)
  M.stop(client.id)
  local handles = {}
  ---@type table<string, uv.uv_timer_t>
  local timers = {}
  for dir, names in pairs(places(client)) do
    local handle = vim.fn.isdirectory(dir) == 1 and uv.new_fs_event()
    if handle then
      local ok = handle:start(dir, {}, function(err, filename)
        if err or not filename or not names[vim.fs.basename(filename)] then
          return
        end
        local path = dir .. '/' .. vim.fs.basename(filename)
        -- Editors write in steps (truncate, write, rename): report once things settle.
        local timer = timers[path] or uv.new_timer()
        timers[path] = timer
        timer:start(SETTLE_MS, 0, function()
          vim.schedule(function()
            if client:is_stopped() then
              return
            end
            local kind = uv.fs_stat(path) and CHANGED or DELETED
            status.log(vim.log.levels.INFO, ('settings file changed: %s'):format(path))
            client:notify('workspace/didChangeWatchedFiles', {
              changes = { { uri = vim.uri_from_fname(path), type = kind } },
            })
          end)
        end)
      end)
      if ok then
        table.insert(handles, handle)
      else
        handle:close()
      end
    end
  end
  M.watches[client.id] = { events = handles, timers = timers }
end

--- Stops the watches of a client.
---@param client_id integer
function M.stop(client_id)
  local watches = M.watches[client_id]
  M.watches[client_id] = nil
  if not watches then
    return
  end
  local all = vim.list_extend(vim.list_extend({}, watches.events), vim.tbl_values(watches.timers))
  for _, handle in ipairs(all) do
    if not handle:is_closing() then
      handle:close()
    end
  end
end

return M
