--- Run in a real terminal (tmux): the provider answers every request with HTTP 500 while the
--- test types in Insert mode. Nothing may block typing: Neovim stays in Insert mode, never
--- shows a "Press ENTER" prompt, and every typed key lands in the buffer. The failure is shown
--- once, as one line; the statusline and the log have the rest.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

t.run('no_blocking', function()
  t.load_plugin()
  t.ok(require('mmx').setup(t.opts({ inline = { debounce_ms = 50 } })), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.attached(buf)
  vim.o.laststatus = 2
  vim.o.statusline = "%f %=%{v:lua.require'mmx'.statusline()}"
  vim.api.nvim_win_set_cursor(0, { 2, 4 })
  vim.cmd('startinsert!')
  t.wait(5000, function()
    return vim.api.nvim_get_mode().mode == 'i'
  end, 'Insert mode')

  -- From now on, sample the mode while the keys come from the terminal.
  local odd = {}
  local sampler = assert(vim.uv.new_timer())
  sampler:start(
    0,
    20,
    vim.schedule_wrap(function()
      local m = vim.api.nvim_get_mode()
      if m.blocking or m.mode ~= 'i' then
        table.insert(odd, m)
      end
    end)
  )
  vim.fn.writefile({ 'ready' }, t.env.workdir .. '/ready')
  t.wait(90000, function()
    return (vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1] or ''):find('DONE', 1, true)
  end, 'the text typed in the terminal')
  t.sleep(300)
  sampler:stop()
  sampler:close()

  t.eq(
    vim.api.nvim_buf_get_lines(buf, 0, -1, false),
    { 'def add(a, b):', '    x = compute(a, b)  # DONE' },
    'every key landed'
  )
  t.eq(odd, {}, 'always in Insert mode, never blocked')
  local failed = vim.tbl_filter(function(s)
    return type(s.error) == 'string' and s.error ~= ''
  end, t.statuses)
  t.ok(#failed >= 1, ('requests failed while typing (%d statuses)'):format(#t.statuses))
  t.ok(require('mmx').statusline():find('error', 1, true), 'the statusline says so')
  local shown = require('mmx.status').shown
  t.ok(#shown >= 1, 'the failure was shown')
  local kinds = {}
  for _, n in ipairs(shown) do
    t.ok(n.kind and not kinds[n.kind], 'at most one message per kind of failure: ' .. vim.inspect(shown))
    kinds[n.kind] = true
  end
  t.eq(#t.notifications, 0, 'nothing through vim.notify')
  vim.fn.writefile({ 'shown: ' .. #shown }, t.env.workdir .. '/result')
end)
