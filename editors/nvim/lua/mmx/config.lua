--- Options of the mmx plugin: defaults, validation and the current values.
local M = {}

---@class mmx.ServerOpts
---@field path? string Executable of the server (default: `mmx-lsp` on $PATH).
---@field python? string Python interpreter that runs `-m mmx_lsp`; takes precedence over `path`.
---@field args? string[] Extra arguments for the server.

---@class mmx.InlineOpts
---@field enabled? boolean Ask the server for ghost text while typing (default: true).
---@field native? boolean Use `vim.lsp.inline_completion` where Neovim has it (default: true).
---@field debounce_ms? integer Quiet time before a request on Neovim 0.11 (default: 150).
---@field accept_key? string|false Accepts the ghost text; falls through when none shows (default: `<Tab>`).
---@field dismiss_key? string|false Dismisses the ghost text (default: `<C-]>`).

---@class mmx.StatusOpts
---@field notify_errors? boolean Show failed requests with `vim.notify` (default: true).
---@field log_size? integer Entries kept for `:Mmx log` (default: 200).

---@class mmx.Opts
---@field filetypes? string[] Filetypes the server is started for.
---@field root_markers? string[] Files that mark a workspace root.
---@field server? mmx.ServerOpts How to start the server (client-only, never sent).
---@field settings? table<string, any> The `mmx` settings (providers, tiers, routing, cache, privacy) sent as `initializationOptions` and `settings.mmx`.
---@field inline? mmx.InlineOpts
---@field status? mmx.StatusOpts

---@class mmx.Config
---@field filetypes string[]
---@field root_markers string[]
---@field server mmx.ServerOpts
---@field settings table<string, any>
---@field inline mmx.InlineOpts
---@field status mmx.StatusOpts

---@type mmx.Config
M.defaults = {
  filetypes = {
    'python',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'go',
    'rust',
    'java',
    'c',
    'cpp',
  },
  root_markers = { 'mmx.toml', 'pyproject.toml', 'package.json', 'go.mod', 'Cargo.toml', '.git' },
  server = { args = {} },
  settings = {},
  inline = {
    enabled = true,
    native = true,
    debounce_ms = 150,
    accept_key = '<Tab>',
    dismiss_key = '<C-]>',
  },
  status = {
    notify_errors = true,
    log_size = 200,
  },
}

---@type mmx.Config
M.values = vim.deepcopy(M.defaults)

---@param value any
---@return boolean
local function is_key_or_false(value)
  return value == false or (type(value) == 'string' and value ~= '')
end

---@param t any
---@return boolean
local function is_string_list(t)
  if type(t) ~= 'table' or not vim.islist(t) then
    return false
  end
  for _, v in ipairs(t) do
    if type(v) ~= 'string' then
      return false
    end
  end
  return true
end

--- Checks user options; raises an error naming the option on the first bad one.
---@param opts mmx.Opts
function M.validate(opts)
  vim.validate('opts', opts, 'table')
  vim.validate('filetypes', opts.filetypes, is_string_list, true, 'list of filetype names')
  vim.validate('root_markers', opts.root_markers, is_string_list, true, 'list of file names')
  vim.validate('server', opts.server, 'table', true)
  vim.validate('settings', opts.settings, 'table', true)
  vim.validate('inline', opts.inline, 'table', true)
  vim.validate('status', opts.status, 'table', true)
  local server = opts.server or {}
  vim.validate('server.path', server.path, 'string', true)
  vim.validate('server.python', server.python, 'string', true)
  vim.validate('server.args', server.args, is_string_list, true, 'list of strings')
  local inline = opts.inline or {}
  vim.validate('inline.enabled', inline.enabled, 'boolean', true)
  vim.validate('inline.native', inline.native, 'boolean', true)
  vim.validate('inline.debounce_ms', inline.debounce_ms, function(v)
    return v == nil or (type(v) == 'number' and v >= 0 and math.floor(v) == v)
  end, 'non-negative integer')
  vim.validate('inline.accept_key', inline.accept_key, function(v)
    return v == nil or is_key_or_false(v)
  end, 'key string or false')
  vim.validate('inline.dismiss_key', inline.dismiss_key, function(v)
    return v == nil or is_key_or_false(v)
  end, 'key string or false')
  local status = opts.status or {}
  vim.validate('status.notify_errors', status.notify_errors, 'boolean', true)
  vim.validate('status.log_size', status.log_size, function(v)
    return v == nil or (type(v) == 'number' and v >= 1)
  end, 'positive number')
end

--- Validates `opts` and merges them over the defaults; keeps the current values on error.
---@param opts? mmx.Opts
---@return boolean ok
---@return string? err
function M.set(opts)
  opts = opts or {}
  local ok, err = pcall(M.validate, opts)
  if not ok then
    return false, tostring(err):gsub('^.-:%d+: ', '')
  end
  M.values = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts)
  -- Lists replace rather than merge.
  M.values.filetypes = opts.filetypes or M.defaults.filetypes
  M.values.root_markers = opts.root_markers or M.defaults.root_markers
  return true
end

--- The settings as they go on the wire: an empty table is sent as an object (`{}`), which is
--- what the server expects, not as the empty list (`[]`) Lua would make of it.
---@param settings? table<string, any>
---@return table<string, any>
function M.wire(settings)
  if settings == nil or (type(settings) == 'table' and next(settings) == nil) then
    return vim.empty_dict()
  end
  return settings
end

--- The command that starts the server.
---@param server? mmx.ServerOpts
---@return string[]
function M.cmd(server)
  server = server or M.values.server
  local cmd ---@type string[]
  if server.python then
    cmd = { server.python, '-m', 'mmx_lsp' }
  else
    cmd = { server.path or 'mmx-lsp' }
  end
  vim.list_extend(cmd, server.args or {})
  return cmd
end

return M
