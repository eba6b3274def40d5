-- Neovim for docs/pictures.py: the plugin against the real server (both tiers on the loopback
-- stub at $MMX_PICTURE_STUB), a completion asked for in a small Python file, and the
-- statusline showing tier, model and cost. Writes $MMX_PICTURE_DONE when the status came.
vim.opt.runtimepath:prepend(os.getenv('MMX_PICTURE_PLUGIN'))
vim.cmd.runtime('plugin/mmx.lua')
vim.o.laststatus = 2
vim.o.number = true
vim.o.showmode = false
vim.o.statusline = " %f %= %{v:lua.require'mmx'.statusline()} "
vim.cmd.colorscheme('default')
vim.o.background = 'dark'

local server = vim.json.decode(os.getenv('MMX_PICTURE_SERVER'))
require('mmx').setup({
  server = { path = server[1], args = vim.list_slice(server, 2) },
  inline = { debounce_ms = 50 },
  settings = {
    providers = { stub = { base_url = os.getenv('MMX_PICTURE_STUB'), api_key_env = 'MMX_STUB_KEY' } },
    tiers = {
      cheap = { provider = 'stub', model = 'gpt-5-mini' },
      premium = { provider = 'stub', model = 'gpt-5.5' },
    },
  },
})

vim.api.nvim_create_autocmd('User', {
  pattern = 'MmxStatus',
  callback = function()
    vim.defer_fn(function()
      vim.cmd.redrawstatus()
      vim.fn.writefile({ 'done' }, os.getenv('MMX_PICTURE_DONE'))
    end, 300)
  end,
})

vim.defer_fn(function()
  vim.api.nvim_win_set_cursor(0, { 3, 4 })
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('A', true, false, true), 'n', false)
end, 2500)
