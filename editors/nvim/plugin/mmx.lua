--- The `:Mmx` user command; everything else loads on first use.
if vim.g.loaded_mmx then
  return
end
vim.g.loaded_mmx = true

vim.api.nvim_create_user_command('Mmx', function(args)
  require('mmx').command(args)
end, {
  nargs = '*',
  range = true,
  desc = 'mmx: tier, explain, stats, actions, log, restart, status',
  complete = function(arglead, cmdline)
    return require('mmx').complete(arglead, cmdline)
  end,
})
