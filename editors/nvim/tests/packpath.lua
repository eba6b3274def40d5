--- The plugin installed as a plain package ('packpath', `:packadd`), without a plugin manager.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('packpath', function()
  local pack = t.env.workdir .. '/site'
  vim.fn.mkdir(pack .. '/pack/mmx/opt', 'p')
  -- A copy, as a user would make one (and :helptags must not write into the checkout).
  local out = vim.fn.system({ 'cp', '-R', t.env.plugin, pack .. '/pack/mmx/opt/mmx' })
  t.eq(vim.v.shell_error, 0, 'copy the plugin: ' .. out)
  vim.opt.packpath:prepend(pack)
  t.eq(vim.fn.exists(':Mmx'), 0, 'no :Mmx before :packadd')
  vim.cmd.packadd('mmx')
  t.eq(vim.fn.exists(':Mmx'), 2, ':Mmx defined by plugin/mmx.lua')

  -- lsp/mmx.lua is found on the runtimepath as a vim.lsp.Config.
  local cfg = vim.lsp.config.mmx
  t.ok(cfg, 'vim.lsp.config.mmx resolves')
  t.eq(cfg.cmd, { 'mmx-lsp' }, 'default cmd')
  t.ok(vim.list_contains(cfg.filetypes, 'python'), 'python among the filetypes')
  t.ok(type(cfg.handlers['mmx/status']) == 'function', 'mmx/status handler')
  t.ok(vim.startswith(vim.api.nvim_get_runtime_file('lsp/mmx.lua', false)[1], pack), 'lsp/mmx.lua from the package')

  -- Every module loads.
  for _, mod in ipairs({ 'mmx', 'mmx.config', 'mmx.status', 'mmx.inline', 'mmx.commands', 'mmx.health', 'mmx.watch' }) do
    local ok, err = pcall(require, mod)
    t.ok(ok, mod .. ' loads: ' .. tostring(err))
  end

  -- :help works as installed, without running :helptags: doc/tags ships, and is what
  -- :helptags makes of doc/mmx.txt today.
  local fresh = t.env.workdir .. '/fresh-doc'
  vim.fn.mkdir(fresh, 'p')
  vim.fn.writefile(vim.fn.readfile(t.env.plugin .. '/doc/mmx.txt'), fresh .. '/mmx.txt')
  vim.cmd.helptags(vim.fn.fnameescape(fresh))
  t.eq(
    vim.fn.readfile(pack .. '/pack/mmx/opt/mmx/doc/tags'),
    vim.fn.readfile(fresh .. '/tags'),
    'doc/tags is up to date (run :helptags editors/nvim/doc)'
  )
  vim.cmd.help('mmx')
  t.eq(vim.bo.filetype, 'help', ':help mmx opens')
  vim.cmd.help('mmx-options')
  vim.cmd.help('mmx-statusline')
  vim.cmd.help(':Mmx')
  vim.cmd.help('mmx-messages')
  vim.cmd.help('mmx-settings-files')
  vim.cmd.close()

  -- Completion of the command.
  t.eq(require('mmx').complete('', 'Mmx tier '), { 'premium', 'cheap', 'auto' }, 'tier completion')
  t.eq(require('mmx').complete('s', 'Mmx tier premium s'), { 'session' }, 'scope completion')
  t.ok(vim.list_contains(require('mmx').complete('', 'Mmx '), 'explain'), 'subcommand completion')
  t.eq(require('mmx').complete('ex', "'<,'>Mmx ex"), { 'explain' }, 'completion after a range')
  t.eq(require('mmx').complete('', '1,2Mmx tier premium '), { 'next', 'file', 'session' }, 'scope after a range')
end)
