--- The mmx-lsp server as a Neovim 0.11+ `vim.lsp.Config`: `vim.lsp.enable('mmx')` works with
--- this alone; `require('mmx').setup()` fills in the options on top of it.
local defaults = require('mmx.config').defaults

---@type vim.lsp.Config
return {
  cmd = { 'mmx-lsp' },
  filetypes = defaults.filetypes,
  root_markers = defaults.root_markers,
  capabilities = {
    textDocument = {
      inlineCompletion = { dynamicRegistration = false },
    },
    -- mmx/explanation opens in a float here: the server need not repeat it as a message.
    experimental = { mmx = { explanation = true } },
  },
  handlers = {
    ['mmx/status'] = function(...)
      return require('mmx.status').handler(...)
    end,
    ['mmx/explanation'] = function(...)
      return require('mmx.commands').explanation_handler(...)
    end,
    ['window/logMessage'] = function(...)
      return require('mmx.status').log_message_handler(...)
    end,
    -- Failures go to the statusline and the log, and to the message area at most once a
    -- minute per kind: never a prompt that interrupts typing.
    ['window/showMessage'] = function(...)
      return require('mmx.status').show_message_handler(...)
    end,
    ['$/progress'] = function(err, result, ctx)
      if type(result) == 'table' then
        require('mmx.status').on_progress(result.token, result.value)
      end
      return vim.lsp.handlers['$/progress'](err, result, ctx)
    end,
  },
  before_init = function(params)
    require('mmx').before_init(params)
  end,
  on_init = function(client)
    require('mmx').on_init(client)
  end,
  on_attach = function(client, bufnr)
    require('mmx').on_attach(client, bufnr)
  end,
  on_exit = function(code, signal, client_id)
    require('mmx').on_exit(code, signal, client_id)
  end,
}
