--- Ghost text from `textDocument/inlineCompletion`: Neovim's own UI where it exists (0.12+),
--- otherwise extmarks drawn here (0.11), with accept and dismiss keys and the verdict reported.
local config = require('mmx.config')
local status = require('mmx.status')

local M = {}

local api = vim.api
local METHOD = 'textDocument/inlineCompletion'
local REQUEST_CANCELLED = -32800

M.ns = api.nvim_create_namespace('mmx.inline')

---@type table? Neovim's own inline completion module, when this build has one.
M.native = nil
do
  local ok, mod = pcall(require, 'vim.lsp.inline_completion')
  if ok and type(mod) == 'table' and mod.enable and mod.get then
    M.native = mod
  end
end

---@class mmx.inline.Item
---@field text string The whole text to insert over `range`.
---@field display string The part not typed yet, shown as ghost text at the cursor.
---@field range integer[] { start_row, start_col, end_row, end_col }, 0-based bytes.
---@field command? lsp.Command
---@field client_id integer

---@class mmx.inline.State
---@field bufnr integer
---@field client_id integer
---@field native boolean
---@field timer? uv.uv_timer_t
---@field pending? integer Id of the request in flight.
---@field item? mmx.inline.Item The suggestion on screen.
---@field augroup integer

---@type table<integer, mmx.inline.State>
M.states = {}

--- Whether the buffer uses Neovim's own inline completion.
---@return boolean
function M.use_native()
  return M.native ~= nil and config.values.inline.native ~= false
end

---@param command any
---@return string?
local function request_id_of(command)
  if type(command) ~= 'table' or type(command.arguments) ~= 'table' then
    return nil
  end
  local arg = command.arguments[1]
  if type(arg) == 'table' and type(arg.request_id) == 'string' then
    return arg.request_id
  end
  return nil
end

--- Sends a server command (`workspace/executeCommand`), logging a failure.
---@param client vim.lsp.Client
---@param command lsp.Command
---@param bufnr integer
local function exec(client, command, bufnr)
  client:request('workspace/executeCommand', {
    command = command.command,
    arguments = command.arguments,
  }, function(err)
    if err then
      status.log(vim.log.levels.WARN, ('%s failed: %s'):format(command.command, err.message or vim.inspect(err)))
    end
  end, bufnr)
end

---@param st mmx.inline.State
local function stop_timer(st)
  local timer = st.timer
  st.timer = nil
  if timer and not timer:is_closing() then
    timer:stop()
    timer:close()
  end
end

---@param st mmx.inline.State
local function cancel_pending(st)
  local id = st.pending
  st.pending = nil
  if id then
    local client = vim.lsp.get_client_by_id(st.client_id)
    if client then
      client:cancel_request(id)
    end
  end
end

--- Removes the ghost text of the buffer, if any.
---@param bufnr integer
function M.clear(bufnr)
  local st = M.states[bufnr]
  if st then
    st.item = nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Whether a suggestion shows in the buffer.
---@param bufnr? integer
---@return boolean
function M.visible(bufnr)
  bufnr = bufnr and bufnr ~= 0 and bufnr or api.nvim_get_current_buf()
  local st = M.states[bufnr]
  if not st then
    return false
  end
  if st.native then
    local ns = api.nvim_get_namespaces()['nvim.lsp.inline_completion']
    return ns ~= nil and #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { limit = 1 }) > 0
  end
  return st.item ~= nil
end

---@param bufnr integer
---@param pos lsp.Position
---@param encoding string
---@return integer row, integer col
local function byte_pos(bufnr, pos, encoding)
  local line = api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  return pos.line, ok and col or #line
end

--- Turns a server item into what is drawn, or nil when it does not fit the cursor.
---@param bufnr integer
---@param client vim.lsp.Client
---@param raw any lsp.InlineCompletionItem
---@param row integer cursor row, 0-based
---@param col integer cursor column, 0-based bytes
---@return mmx.inline.Item?
local function make_item(bufnr, client, raw, row, col)
  if type(raw) ~= 'table' then
    return nil
  end
  local text = raw.insertText
  if type(text) == 'table' then
    text = text.value -- a snippet is shown and inserted as its plain text
  end
  if type(text) ~= 'string' or text == '' then
    return nil
  end
  local range = { row, col, row, col }
  if type(raw.range) == 'table' and raw.range.start and raw.range['end'] then
    local sr, sc = byte_pos(bufnr, raw.range.start, client.offset_encoding)
    local er, ec = byte_pos(bufnr, raw.range['end'], client.offset_encoding)
    range = { sr, sc, er, ec }
  end
  local display = text
  if range[1] ~= row or range[2] ~= col then
    -- The range starts before the cursor: the text typed since then must begin the item.
    if range[1] > row or (range[1] == row and range[2] > col) then
      return nil
    end
    local typed = table.concat(api.nvim_buf_get_text(bufnr, range[1], range[2], row, col, {}), '\n')
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    display = text:sub(#typed + 1)
  end
  if display == '' then
    return nil
  end
  return { text = text, display = display, range = range, command = raw.command, client_id = client.id }
end

---@param bufnr integer
---@param item mmx.inline.Item
local function draw(bufnr, item)
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local lines = vim.split(item.display, '\n', { plain = true })
  local cursor = api.nvim_win_get_cursor(0)
  local virt_lines = {}
  for i = 2, #lines do
    table.insert(virt_lines, { { lines[i], 'MmxGhostText' } })
  end
  local opts = { hl_mode = 'combine', virt_lines = #virt_lines > 0 and virt_lines or nil }
  if lines[1] ~= '' then
    opts.virt_text = { { lines[1], 'MmxGhostText' } }
    opts.virt_text_pos = 'inline'
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, cursor[1] - 1, cursor[2], opts)
end

--- Asks the server for a suggestion at the cursor now.
---@param bufnr? integer
function M.request(bufnr)
  bufnr = bufnr and bufnr ~= 0 and bufnr or api.nvim_get_current_buf()
  local st = M.states[bufnr]
  if not st or st.native then
    return
  end
  local client = vim.lsp.get_client_by_id(st.client_id)
  if not client or client:is_stopped() or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  cancel_pending(st)
  local win = api.nvim_get_current_win()
  local cursor = api.nvim_win_get_cursor(win)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding) --[[@as table]]
  params.context = { triggerKind = 2 } -- Automatic
  local ok, id
  ok, id = client:request(METHOD, params, function(err, result)
    if st.pending == id then
      st.pending = nil
    end
    if err then
      if err.code ~= REQUEST_CANCELLED then
        status.log(vim.log.levels.WARN, 'inline completion failed: ' .. (err.message or vim.inspect(err)))
      end
      return
    end
    -- Typing went on or the cursor moved: this answer is stale.
    if
      not api.nvim_buf_is_valid(bufnr)
      or api.nvim_get_current_buf() ~= bufnr
      or api.nvim_buf_get_changedtick(bufnr) ~= tick
      or not vim.deep_equal(api.nvim_win_get_cursor(0), cursor)
      or not api.nvim_get_mode().mode:match('^i')
    then
      return
    end
    local items = type(result) == 'table' and (result.items or result) or {}
    for _, raw in ipairs(items) do
      local item = make_item(bufnr, client, raw, cursor[1] - 1, cursor[2])
      if item then
        st.item = item
        draw(bufnr, item)
        return
      end
    end
  end, bufnr)
  if ok then
    st.pending = id
  end
end

--- Typing or moving in insert mode: drop what shows, cancel what is in flight, ask again later.
---@param st mmx.inline.State
local function on_change(st)
  M.clear(st.bufnr)
  cancel_pending(st)
  stop_timer(st)
  if not config.values.inline.enabled then
    return
  end
  local timer = assert(vim.uv.new_timer())
  st.timer = timer
  timer:start(
    config.values.inline.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if st.timer == timer then
        stop_timer(st)
        M.request(st.bufnr)
      end
    end)
  )
end

--- Inserts the suggestion that shows and reports the acceptance through the item's command.
---@param bufnr? integer
---@return boolean accepted
function M.accept(bufnr)
  bufnr = bufnr and bufnr ~= 0 and bufnr or api.nvim_get_current_buf()
  local st = M.states[bufnr]
  if not st then
    return false
  end
  if st.native then
    return M.native.get({ bufnr = bufnr })
  end
  local item = st.item
  if not item then
    return false
  end
  M.clear(bufnr)
  local lines = vim.split(item.text, '\n', { plain = true })
  local r = item.range
  api.nvim_buf_set_text(bufnr, r[1], r[2], r[3], r[4], lines)
  local row = r[1] + #lines - 1
  local col = (#lines == 1 and r[2] or 0) + #lines[#lines]
  pcall(api.nvim_win_set_cursor, 0, { row + 1, col })
  local client = vim.lsp.get_client_by_id(item.client_id)
  if client and type(item.command) == 'table' and type(item.command.command) == 'string' then
    exec(client, item.command, bufnr)
  end
  return true
end

--- Hides the suggestion and reports it as rejected.
---@param bufnr? integer
---@return boolean dismissed
function M.dismiss(bufnr)
  bufnr = bufnr and bufnr ~= 0 and bufnr or api.nvim_get_current_buf()
  local st = M.states[bufnr]
  if not st or not M.visible(bufnr) then
    return false
  end
  local client = vim.lsp.get_client_by_id(st.client_id)
  ---@param command any the item's command, which names its request
  local function reject(command)
    local request_id = request_id_of(command)
    if client and request_id then
      exec(client, { title = 'rejected', command = 'mmx.rejected', arguments = { { request_id = request_id } } }, bufnr)
    end
  end
  if st.native then
    -- get() with a handler of our own hides the item and hands it over without inserting it.
    return M.native.get({
      bufnr = bufnr,
      on_accept = function(item)
        reject(item.command)
      end,
    })
  end
  local command = st.item and st.item.command
  M.clear(bufnr)
  reject(command)
  return true
end

--- What `key` did before the buffer mapping, as the keys an `expr` mapping returns: the
--- global mapping if there is one (0.11's snippet-jumping <Tab>, a completion plugin's), else
--- the key itself.
---@param key string
---@return fun(): string
local function fallback(key)
  local prev = vim.fn.maparg(key, 'i', false, true)
  if type(prev) ~= 'table' or vim.tbl_isempty(prev) or prev.buffer == 1 then
    return function()
      return key
    end
  end
  return function()
    if prev.callback then
      local ret = prev.callback()
      return prev.expr == 1 and type(ret) == 'string' and ret or ''
    end
    if prev.expr == 1 then
      return vim.api.nvim_eval(prev.rhs)
    end
    return prev.rhs or key
  end
end

---@param bufnr integer
---@param key string
---@param action fun(bufnr: integer): boolean
---@param desc string
local function map_key(bufnr, key, action, desc)
  local otherwise = fallback(key)
  vim.keymap.set('i', key, function()
    if M.visible(bufnr) then
      vim.schedule(function()
        action(bufnr)
      end)
      return ''
    end
    return otherwise()
  end, { buffer = bufnr, expr = true, desc = desc })
end

---@param bufnr integer
local function map_keys(bufnr)
  local inline = config.values.inline
  if inline.accept_key then
    map_key(bufnr, inline.accept_key --[[@as string]], M.accept, 'mmx: accept the suggestion')
  end
  if inline.dismiss_key then
    map_key(bufnr, inline.dismiss_key --[[@as string]], M.dismiss, 'mmx: dismiss the suggestion')
  end
end

--- Starts ghost text in a buffer that the mmx client attached to.
---@param client vim.lsp.Client
---@param bufnr integer
function M.attach(client, bufnr)
  if M.states[bufnr] or not config.values.inline.enabled then
    return
  end
  if not (client.server_capabilities or {}).inlineCompletionProvider then
    status.log(vim.log.levels.WARN, 'the server offers no inline completion: no ghost text')
    return
  end
  local native = M.use_native()
  local st = {
    bufnr = bufnr,
    client_id = client.id,
    native = native,
    augroup = api.nvim_create_augroup('mmx.inline.' .. bufnr, { clear = true }),
  }
  M.states[bufnr] = st
  if native then
    M.native.enable(true, { bufnr = bufnr })
    -- Neovim's own module asks again after each change but lets the old request run on; its
    -- answer would be thrown away. Cancel it: the server stops the model call, and a "next"
    -- tier override is not spent on an answer nobody sees.
    api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI' }, {
      group = st.augroup,
      buffer = bufnr,
      callback = function()
        local c = vim.lsp.get_client_by_id(st.client_id)
        for id, r in pairs(c and c.requests or {}) do
          if r.type == 'pending' and r.method == METHOD and r.bufnr == bufnr then
            c:cancel_request(id)
          end
        end
      end,
    })
  else
    api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI' }, {
      group = st.augroup,
      buffer = bufnr,
      callback = function()
        on_change(st)
      end,
    })
    api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
      group = st.augroup,
      buffer = bufnr,
      callback = function()
        stop_timer(st)
        cancel_pending(st)
        M.clear(bufnr)
      end,
    })
  end
  api.nvim_create_autocmd('BufWipeout', {
    group = st.augroup,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
  map_keys(bufnr)
end

--- Stops ghost text in a buffer (the client detached or the buffer went away).
---@param bufnr integer
function M.detach(bufnr)
  local st = M.states[bufnr]
  if not st then
    return
  end
  M.states[bufnr] = nil
  stop_timer(st)
  cancel_pending(st)
  M.clear(bufnr)
  pcall(api.nvim_del_augroup_by_id, st.augroup)
  if api.nvim_buf_is_valid(bufnr) then
    local inline = config.values.inline
    for _, key in ipairs({ inline.accept_key, inline.dismiss_key }) do
      if key then
        pcall(vim.keymap.del, 'i', key, { buffer = bufnr })
      end
    end
    if st.native then
      pcall(M.native.enable, false, { bufnr = bufnr })
    end
  end
end

return M
