--- The server dies in the middle of a session: a clear message, ghost text and keys off,
--- the editor keeps working, and :Mmx restart brings the server back.
local t = dofile(vim.env.MMX_TEST_PLUGIN .. '/tests/helpers.lua')

-- The real server, in a process that dies (exit code 9) once the crash file exists.
local WRAPPER = [[
import os, runpy, sys, threading, time
flag = os.environ["MMX_TEST_CRASH_FILE"]
def watch():
    while not os.path.exists(flag):
        time.sleep(0.05)
    os._exit(9)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["mmx_lsp"]
runpy.run_module("mmx_lsp", run_name="__main__")
]]

t.run('server_crash', function()
  t.load_plugin()
  local crash_file = t.env.workdir .. '/crash-now'
  vim.fn.delete(crash_file)
  vim.env.MMX_TEST_CRASH_FILE = crash_file
  local opts = t.opts({ server = { path = t.env.server[1], args = { '-c', WRAPPER } } })
  t.ok(require('mmx').setup(opts), 'setup() succeeds')
  local buf = t.open('calc.py', { 'def add(a, b):', '    ' })
  t.attached(buf)
  t.ok(vim.fn.maparg('<Tab>', 'i', false, true).buffer == 1, '<Tab> mapped while the server runs')

  vim.fn.writefile({}, crash_file)
  local n = t.wait(15000, function()
    return t.notified('the server stopped %(exit code 9')
  end, 'the crash message')
  t.eq(n.level, vim.log.levels.ERROR, 'crash message level')
  t.ok(n.message:find(':Mmx restart', 1, true), 'the message says how to restart')
  t.wait(5000, function()
    return #vim.lsp.get_clients({ name = 'mmx' }) == 0
  end, 'the client to go away')

  -- The editor keeps working: typing, and <Tab> is a plain key again.
  t.ok(vim.fn.maparg('<Tab>', 'i', false, true).buffer ~= 1, '<Tab> buffer mapping removed')
  t.feed('GAreturn a<Tab>+ b<Esc>')
  local line = vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]
  t.ok(line:find('^%s+return a%s+%+ b$'), 'typed text: ' .. vim.inspect(line))
  t.eq(require('mmx').statusline(), '', 'statusline cleared')
  vim.cmd('Mmx explain')
  t.ok(t.notified('not running'), ':Mmx explain says the server is not running')

  -- :Mmx restart starts it again.
  vim.fn.delete(crash_file)
  vim.cmd('Mmx restart')
  t.attached(buf)
  t.wait(5000, function()
    return vim.fn.maparg('<Tab>', 'i', false, true).buffer == 1
  end, 'ghost text keys back after the restart')

  -- A server that dies at once, before initialize: the same clear message.
  vim.lsp.enable('mmx', false)
  t.wait(5000, function()
    return #vim.lsp.get_clients({ name = 'mmx' }) == 0
  end, 'the client to stop')
  local broken = t.opts({ server = { path = t.env.server[1], args = { '-c', 'import sys; sys.exit(4)' } } })
  t.ok(require('mmx').setup(broken), 'setup() with a server that cannot start')
  local other = t.open('other.py', { 'x = 1' })
  n = t.wait(15000, function()
    return t.notified('the server stopped %(exit code 4')
  end, 'the message for a server that dies at start')
  t.eq(n.level, vim.log.levels.ERROR, 'start crash message level')
  t.feed('Ay = 2<Esc>')
  t.eq(vim.api.nvim_buf_get_lines(other, 0, -1, false), { 'x = 1y = 2' }, 'editing goes on')
end)
