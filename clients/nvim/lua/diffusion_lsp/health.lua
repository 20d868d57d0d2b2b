--- :checkhealth diffusion_lsp — Neovim features, the server command, and whether the server
--- starts and loads its model (asked through the running client, or a short-lived probe).

local M = {}

local plugin = require('diffusion_lsp')

--- How long the probe waits for the server and the model (ms).
local function timeout_ms()
  return tonumber(vim.g.diffusion_lsp_health_timeout_ms) or 60000
end

--- @param path string
--- @param n integer
--- @return string
local function tail(path, n)
  local ok, lines = pcall(vim.fn.readfile, path)
  if not ok or #lines == 0 then
    return ''
  end
  return table.concat(vim.list_slice(lines, math.max(1, #lines - n + 1)), '\n')
end

--- Waits for the status to say the model finished loading (or failed).
--- @param request fun(method: string, params: table, cb: fun(err: table?, result: any))
--- @param deadline number vim.uv.now() limit
--- @param alive fun(): boolean
--- @return table? status, string? error
local function wait_for_model(request, deadline, alive)
  local status, err, pending = nil, nil, false
  local function ask()
    pending = true
    request('workspace/executeCommand', { command = plugin.STATUS_COMMAND, arguments = {} }, function(e, r)
      pending = false
      err = e and (e.message or vim.inspect(e)) or nil
      status = r
    end)
  end
  ask()
  local done = function()
    if not alive() or err then
      return true
    end
    if pending then
      return false
    end
    if type(status) == 'table' and not status.loading then
      return true
    end
    ask() -- still loading: ask again (checked every 100 ms)
    return false
  end
  vim.wait(math.max(0, deadline - vim.uv.now()), done, 100)
  return status, err
end

--- @param status table
local function report_model(status)
  local h = vim.health
  local model = status.model
  if type(model) == 'table' then
    h.ok(
      ('model loaded: %s (%s, %s parameters, device %s)'):format(
        tostring(model.path),
        tostring(model.kind),
        tostring(model.parameters),
        tostring(model.device)
      )
    )
  elseif status.loading then
    h.warn('the model is still loading (raise vim.g.diffusion_lsp_health_timeout_ms?)')
  else
    h.error(
      'the model did not load: ' .. tostring(status.model_error or 'unknown error'),
      { 'Set settings.modelPath to a model directory (config.json, model.safetensors, tokenizer.json)' }
    )
  end
end

--- Starts the server on its own, initializes it, waits for the model, shuts it down.
--- @return boolean started
function M.probe(cmd, settings, env)
  local h = vim.health
  local stderr_file = vim.fn.tempname()
  local spawn = cmd
  if vim.fn.has('unix') == 1 then
    -- keep the server's stderr for the report
    spawn = vim.list_extend({ 'sh', '-c', 'exec "$@" 2>"$0"', stderr_file }, cmd)
  end
  local exited, exit_code = false, nil
  local messages = {}
  local ok, rpc = pcall(vim.lsp.rpc.start, spawn, {
    notification = function(method, params)
      if method == 'window/showMessage' then
        table.insert(messages, params.message)
      end
    end,
    server_request = function(method, params)
      if method == 'workspace/configuration' then
        return vim.tbl_map(function()
          return settings
        end, params.items or {})
      end
      return vim.NIL
    end,
    on_exit = function(code)
      exited, exit_code = true, code
    end,
    on_error = function() end,
  }, { env = env })
  if not ok then
    h.error('could not start the server: ' .. tostring(rpc))
    return false
  end
  local deadline = vim.uv.now() + timeout_ms()
  local t0 = vim.uv.now()
  local init, init_err = nil, nil
  rpc.request('initialize', {
    processId = vim.fn.getpid(),
    rootUri = vim.NIL,
    capabilities = {},
    initializationOptions = settings,
  }, function(err, result)
    init_err, init = err, result or vim.NIL
  end)
  vim.wait(timeout_ms(), function()
    return init ~= nil or init_err ~= nil or exited
  end, 20)
  if init == nil or init_err ~= nil then
    local why = exited and ('it exited with code ' .. tostring(exit_code))
      or init_err and ('initialize failed: ' .. tostring(init_err.message))
      or 'no answer to initialize'
    h.error(
      ('the server did not start: %s'):format(why),
      { 'stderr:\n' .. tail(stderr_file, 15), 'Check `cmd` in setup() (currently ' .. table.concat(cmd, ' ') .. ')' }
    )
    rpc.terminate()
    return false
  end
  local info = type(init) == 'table' and init.serverInfo or {}
  h.ok(
    ('server started in %d ms: %s %s'):format(
      vim.uv.now() - t0,
      tostring(info.name or '?'),
      tostring(info.version or '')
    )
  )
  local caps = type(init) == 'table' and init.capabilities or {}
  local missing = {}
  for _, cap in ipairs({ 'completionProvider', 'codeActionProvider', 'inlineCompletionProvider' }) do
    if not caps[cap] then
      table.insert(missing, cap)
    end
  end
  if #missing > 0 then
    h.warn('the server does not advertise ' .. table.concat(missing, ', '))
  end
  rpc.notify('initialized', {})
  local t1 = vim.uv.now()
  local status, err = wait_for_model(rpc.request, deadline, function()
    return not exited
  end)
  if err then
    h.error('diffusion-lsp.status failed: ' .. err)
  elseif type(status) == 'table' then
    report_model(status)
    if type(status.model) == 'table' then
      h.info(('model load took about %d ms'):format(vim.uv.now() - t1))
    end
  else
    h.error('the server exited while loading the model', { 'stderr:\n' .. tail(stderr_file, 15) })
  end
  for _, msg in ipairs(messages) do
    h.info('server message: ' .. msg)
  end
  if not exited then
    local down = false
    rpc.request('shutdown', vim.NIL, function()
      down = true
    end)
    vim.wait(5000, function()
      return down or exited
    end, 20)
    rpc.notify('exit', vim.NIL)
    vim.wait(2000, function()
      return exited
    end, 20)
    if not exited then
      rpc.terminate()
    end
  end
  vim.fn.delete(stderr_file)
  return true
end

function M.check()
  local h = vim.health
  h.start('diffusion-lsp: Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    h.ok('Neovim ' .. tostring(vim.version()) .. ' (vim.lsp.config, vim.lsp.completion)')
  else
    h.error('Neovim 0.11 or newer is needed')
    return
  end
  if plugin.has_inline_completion() then
    h.ok('ghost text: vim.lsp.inline_completion is available')
  else
    h.ok('ghost text: drawn by the plugin (Neovim 0.11 has no vim.lsp.inline_completion)')
  end

  h.start('diffusion-lsp: configuration')
  local cfg = vim.lsp.config[plugin.NAME]
  if not cfg or not vim.lsp.is_enabled(plugin.NAME) then
    h.warn("setup() was not called", { "Add require('diffusion_lsp').setup({}) to your config" })
  else
    h.ok('enabled for filetypes: ' .. table.concat(cfg.filetypes or {}, ', '))
  end
  local cmd = plugin.server_cmd()
  if vim.fn.executable(cmd[1]) == 1 then
    h.ok(('server command: %s (%s)'):format(table.concat(cmd, ' '), vim.fn.exepath(cmd[1])))
  else
    h.error(('server command not found: %s'):format(cmd[1]), {
      'pip install diffusion-lsp (in the environment of that Python)',
      "or setup({ cmd = { '/path/to/venv/bin/diffusion-lsp', 'serve' } })",
    })
    return
  end
  local settings = plugin.server_settings(plugin.config.settings or {})
  h.info('server settings: ' .. vim.inspect(settings, { newline = ' ', indent = '' }))

  h.start('diffusion-lsp: server and model')
  local clients = vim.lsp.get_clients({ name = plugin.NAME })
  if #clients > 0 then
    for _, client in ipairs(clients) do
      h.ok(('client %d running (%s)'):format(client.id, table.concat(client.config.cmd or {}, ' ')))
      local status, err = wait_for_model(function(method, params, cb)
        client:request(method, params, cb)
      end, vim.uv.now() + timeout_ms(), function()
        return not client:is_stopped()
      end)
      if err then
        h.error('diffusion-lsp.status failed: ' .. err)
      elseif type(status) == 'table' then
        report_model(status)
      else
        h.error('the client stopped')
      end
    end
  else
    h.info('no running client: starting the server once to test it')
    M.probe(cmd, settings, plugin.config.cmd_env)
  end
end

return M
