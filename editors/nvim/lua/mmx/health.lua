--- `:checkhealth mmx`: what the plugin needs and what is missing, and whether each tier's
--- endpoint answers (the server's `mmx.health`).
local config = require('mmx.config')

local M = {}

local health = vim.health

local function check_neovim()
  local v = vim.version()
  local text = ('Neovim %d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.11') ~= 1 then
    health.error(text .. ': mmx needs Neovim 0.11 or newer (vim.lsp.config / vim.lsp.enable)')
    return
  end
  local native = require('mmx.inline').native ~= nil
  health.ok(
    text
      .. (
        native and ': ghost text through vim.lsp.inline_completion'
        or ': ghost text drawn by mmx (no vim.lsp.inline_completion)'
      )
  )
end

local function check_server()
  local cmd = config.cmd()
  local exe = cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    health.error(('server executable %q not found'):format(exe), {
      'pip install mmx-lsp (or `pip install -e .` in the mmx-lsp repository)',
      "or set server.path, or server.python to run `python -m mmx_lsp`, in require('mmx').setup()",
    })
    return
  end
  local version_cmd = vim.list_extend(vim.deepcopy(cmd), { '--version' })
  local ok, proc = pcall(vim.system, version_cmd, { text = true })
  if not ok then
    health.error(('cannot run %s: %s'):format(table.concat(version_cmd, ' '), tostring(proc)))
    return
  end
  local res = proc:wait(10000)
  local out = vim.trim((res.stdout or '') ~= '' and res.stdout or (res.stderr or ''))
  if res.code ~= 0 then
    health.error(
      ('`%s` failed (exit code %s): %s'):format(table.concat(version_cmd, ' '), tostring(res.code), out),
      { 'reinstall mmx-lsp, or check server.path / server.python' }
    )
    return
  end
  health.ok(('server %s: %s'):format(vim.fn.exepath(exe), out:match('[^\n]*')))
end

--- How long :checkhealth waits for the server's endpoint check.
M.HEALTH_TIMEOUT_MS = 30000

---@param t table one tier of the `mmx.health` answer
---@return string
local function describe_tier(t)
  local parts = { ('%s tier: %s at %s'):format(t.tier, tostring(t.model), tostring(t.base_url)) }
  if type(t.latency_ms) == 'number' then
    table.insert(parts, ('answers in %d ms'):format(t.latency_ms))
  end
  if t.api == 'completions' then
    table.insert(parts, 'fill-in-the-middle: ' .. tostring(t.fim))
  end
  return table.concat(parts, ', ')
end

--- Each tier's endpoint, checked by the running server (`mmx.health`).
---@param client vim.lsp.Client
local function check_endpoints(client)
  local res = client:request_sync(
    'workspace/executeCommand',
    { command = 'mmx.health', arguments = { vim.empty_dict() } },
    M.HEALTH_TIMEOUT_MS
  )
  if not res or res.err or type(res.result) ~= 'table' or type(res.result.tiers) ~= 'table' then
    local why = not res and 'no answer in time' or (res.err and (res.err.message or vim.inspect(res.err)))
    health.error('the server could not check the endpoints: ' .. tostring(why or 'unexpected answer'), {
      'update mmx-lsp (mmx.health is needed), then :Mmx restart',
    })
    return
  end
  for _, t in ipairs(res.result.tiers) do
    local text = describe_tier(t)
    if t.problem == nil or t.problem == vim.NIL then
      health.ok(text)
    elseif t.reachable == false or t.reachable == nil or t.reachable == vim.NIL then
      -- Down, or not callable at all (no key): no request on this tier can succeed.
      health.error(text .. ': ' .. t.problem)
    else
      health.warn(text .. ': ' .. t.problem)
    end
    if type(t.fim_detail) == 'string' and t.fim_detail ~= '' then
      health.info(('%s tier: %s'):format(t.tier, t.fim_detail))
    end
  end
end

local function check_attached()
  local clients = vim.lsp.get_clients({ name = 'mmx' })
  if #clients == 0 then
    health.warn('the server is not running: the endpoints were not checked', {
      "call require('mmx').setup() and open a file of a supported filetype: "
        .. table.concat(config.values.filetypes, ', '),
    })
    return
  end
  for _, client in ipairs(clients) do
    local bufs = vim.tbl_keys(client.attached_buffers)
    local info = client.server_info or {}
    health.ok(
      ('client %d (%s %s) attached to %d buffer(s)'):format(
        client.id,
        info.name or 'mmx-lsp',
        info.version or '',
        #bufs
      )
    )
    local caps = client.server_capabilities or {}
    if not caps.inlineCompletionProvider then
      health.warn('the server does not offer inline completion: no ghost text')
    end
  end
  health.start('mmx: endpoints')
  check_endpoints(clients[1])
end

--- Provider names and API key variables from a TOML file (only the keys mmx uses).
---@param path string
---@return table<string, string> provider -> api_key_env
local function providers_in_toml(path)
  local found = {}
  local f = io.open(path, 'r')
  if not f then
    return found
  end
  local section ---@type string?
  for line in f:lines() do
    local name = line:match('^%s*%[%s*providers%.([%w_%-]+)%s*%]')
      or line:match('^%s*%[%s*tool%.mmx%.providers%.([%w_%-]+)%s*%]')
    if name then
      section = name
      found[name] = found[name] or ''
    elseif line:match('^%s*%[') then
      section = nil
    elseif section then
      local env = line:match('^%s*api_key_env%s*=%s*["\']([^"\']+)["\']')
      if env then
        found[section] = env
      end
    end
  end
  f:close()
  return found
end

local function check_providers()
  ---@type table<string, {env: string, source: string}>
  local providers = {}
  local settings = config.values.settings or {}
  if type(settings.providers) == 'table' then
    for name, p in pairs(settings.providers) do
      providers[name] = { env = type(p) == 'table' and p.api_key_env or '', source = 'setup() settings' }
    end
  end
  local xdg = vim.env.XDG_CONFIG_HOME or (vim.env.HOME and vim.env.HOME .. '/.config') or ''
  local files = { xdg .. '/mmx/config.toml' }
  local root = vim.fs.root(0, { 'mmx.toml', 'pyproject.toml' })
  if root then
    table.insert(files, root .. '/mmx.toml')
    table.insert(files, root .. '/pyproject.toml')
  end
  for _, file in ipairs(files) do
    for name, env in pairs(providers_in_toml(file)) do
      if not providers[name] or providers[name].env == '' then
        providers[name] = { env = env, source = vim.fn.fnamemodify(file, ':~') }
      end
    end
  end
  if not next(providers) then
    health.warn('no provider configured', {
      "add providers and tiers to require('mmx').setup({ settings = { … } })",
      'or to $XDG_CONFIG_HOME/mmx/config.toml, or to mmx.toml in the workspace',
    })
    return
  end
  for name, p in vim.spairs(providers) do
    health.ok(('provider %s (from %s)'):format(name, p.source))
    if p.env == nil or p.env == '' then
      health.info(('provider %s names no api_key_env: requests go without a key'):format(name))
    elseif vim.env[p.env] and vim.env[p.env] ~= '' then
      -- Only the variable's name is shown: the key itself never leaves the environment.
      health.ok(('API key variable %s is set'):format(p.env))
    else
      health.error(('API key variable %s is not set'):format(p.env), {
        ('export %s=… in the environment Neovim starts from'):format(p.env),
      })
    end
  end
end

function M.check()
  health.start('mmx: Neovim')
  check_neovim()
  health.start('mmx: server')
  check_server()
  check_attached()
  health.start('mmx: providers')
  check_providers()
end

return M
