--- diffusion-lsp for Neovim 0.11+: starts `diffusion-lsp serve` through vim.lsp.config /
--- vim.lsp.enable, turns on LSP completion (vim.lsp.completion), ghost text as you type
--- (vim.lsp.inline_completion on Neovim 0.12+, the plugin's own extmarks on 0.11:
--- diffusion_lsp/ghost.lua), and adds :DiffusionRepair, :DiffusionStatus, :DiffusionRestart,
--- :DiffusionEnable, :DiffusionDisable, :DiffusionToggle, :DiffusionSnooze and mappings.
---
---   require('diffusion_lsp').setup({
---     cmd = { 'diffusion-lsp', 'serve' },
---     settings = { device = 'cuda', threshold = 0.8 },
---   })

local M = {}

M.NAME = 'diffusion_lsp'
M.REPAIR_TITLE = 'Repair this block'
M.STATUS_COMMAND = 'diffusion-lsp.status'
M.SECTION = 'diffusionLsp'

--- Settings the server understands (the `diffusionLsp` section).
M.SERVER_SETTING_KEYS = {
  'modelPath',
  'device',
  'quantize',
  'blockSize',
  'threshold',
  'maxTokens',
  'latencyBudgetMs',
  'minProbability',
  'tokenHealing',
  'completionCandidates',
  'cacheBudgetMb',
  'cacheDir',
  'cacheDirMaxMb',
  'cacheDirMaxAgeDays',
  'enableCompletion',
  'enableInlineCompletion',
  'enableRepair',
  'nameDiagnostics',
  'logLevel',
}

--- @class diffusion_lsp.Config
M.defaults = {
  --- Server command; nil: `diffusion-lsp serve` if executable, else `python3 -P -m lsp_server`.
  cmd = nil, --- @type string[]?
  --- Extra environment for the server process.
  cmd_env = nil, --- @type table<string,string>?
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'setup.py', 'setup.cfg', '.git' },
  --- Server settings (keys of M.SERVER_SETTING_KEYS), sent as initializationOptions and as
  --- the `diffusionLsp` configuration section.
  settings = {},
  completion = {
    enable = true,
    --- Request completion on the server's trigger characters as you type.
    autotrigger = false,
  },
  inline_completion = {
    --- Ghost text as you type: vim.lsp.inline_completion on Neovim 0.12+, else drawn by
    --- the plugin (extmarks).
    enable = true,
    --- Neovim 0.11 (the plugin's ghost text): ms after the last key before asking.
    debounce_ms = 150,
  },
  repair = {
    --- Show the repair as a diff in a floating window first: `a` (or <CR>) applies it,
    --- `q` (or <Esc>, or closing the window) discards it. false: apply right away.
    preview = true,
  },
  keymaps = {
    --- Normal mode: repair the block at the cursor; visual mode: the selected lines.
    repair = '<leader>dr',
    --- Insert mode: accept the ghost text (falls back to the key itself).
    accept_inline = '<Tab>',
    --- Insert mode: accept the next word / the next line of the ghost text (Neovim 0.11's
    --- plugin-drawn ghost text; the key itself when there is none).
    accept_word = '<M-Right>',
    accept_line = '<M-Down>',
    --- Insert mode (0.11's plugin-drawn ghost text): the next / previous suggestion; with
    --- none shown, ask for suggestions now (the server answers the line and the block).
    next_suggestion = '<M-]>',
    prev_suggestion = '<M-[>',
  },
}

M.config = vim.deepcopy(M.defaults)

local did_setup = false

local ghost = require('diffusion_lsp.ghost')

-- Enable / disable / snooze ---------------------------------------------------------

M._enabled = true
M._snoozed_until = nil --- @type number? vim.uv.now() limit

--- Whether suggestions as you type are on: enabled, and not snoozed.
--- @return boolean
function M.is_enabled()
  if M._snoozed_until and vim.uv.now() >= M._snoozed_until then
    M._snoozed_until = nil
  end
  return M._enabled and M._snoozed_until == nil
end

--- Applies the on/off state to every attached buffer (0.12's built-in ghost text too).
local function apply_enabled()
  local on = M.is_enabled()
  if not on then
    ghost.clear_all()
  end
  if M.has_inline_completion() and M.config.inline_completion.enable then
    for _, client in ipairs(vim.lsp.get_clients({ name = M.NAME })) do
      for buf in pairs(client.attached_buffers) do
        vim.lsp.inline_completion.enable(on, { bufnr = buf, client_id = client.id })
      end
    end
  end
end

--- Turns ghost text on or off (nil: toggle); also ends a snooze.
--- @param on boolean?
function M.enable(on)
  if on == nil then
    on = not M.is_enabled()
  end
  M._enabled, M._snoozed_until = on, nil
  apply_enabled()
end

--- No ghost text for `minutes` (default 15); it comes back by itself.
--- @param minutes number?
function M.snooze(minutes)
  minutes = minutes or 15
  M._snoozed_until = vim.uv.now() + minutes * 60000
  apply_enabled()
  vim.defer_fn(function()
    if M._snoozed_until and vim.uv.now() >= M._snoozed_until then
      M._snoozed_until = nil
      apply_enabled()
    end
  end, math.floor(minutes * 60000) + 10)
end

--- 'on', 'off' or 'snoozed for N min'.
--- @return string
function M.enabled_text()
  if M.is_enabled() then
    return 'on'
  elseif not M._enabled then
    return 'off'
  end
  return ('snoozed for %d min'):format(math.ceil((M._snoozed_until - vim.uv.now()) / 60000))
end

ghost.opts.enabled = M.is_enabled

--- @return boolean
function M.has_inline_completion()
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.enable ~= nil
end

--- The server command: the configured one, else `diffusion-lsp serve`, else python -m.
--- @return string[]
function M.server_cmd()
  if M.config.cmd ~= nil then
    return M.config.cmd
  end
  if vim.fn.executable('diffusion-lsp') == 1 then
    return { 'diffusion-lsp', 'serve' }
  end
  -- -P: the working directory (the project) is not on sys.path, so a msgpack.py or
  -- tokenizers.py in it is never imported into the server (Python 3.11+).
  return { 'python3', '-P', '-m', 'lsp_server' }
end

--- Only the server's keys of a settings table (unknown keys make the server warn).
--- Always a dict: an empty plain Lua table would go out as the JSON list `[]`.
--- @param settings table
--- @return table
function M.server_settings(settings)
  local out = vim.empty_dict()
  for _, key in ipairs(M.SERVER_SETTING_KEYS) do
    if settings[key] ~= nil and settings[key] ~= vim.NIL then
      out[key] = settings[key]
    end
  end
  return out
end

--- The vim.lsp.Config of the server.
--- @return vim.lsp.Config
function M.lsp_config()
  local settings = M.server_settings(M.config.settings or {})
  return {
    name = M.NAME,
    cmd = M.server_cmd(),
    cmd_env = M.config.cmd_env,
    filetypes = M.config.filetypes,
    root_markers = M.config.root_markers,
    init_options = settings,
    settings = { [M.SECTION] = settings },
    on_attach = function(client, bufnr)
      M._on_attach(client, bufnr)
    end,
  }
end

--- @param bufnr integer?
--- @return vim.lsp.Client?
function M.get_client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = M.NAME })[1]
end

-- Completion -------------------------------------------------------------------------

--- Completion items show and insert the first line of the server's text; multi-line items
--- get their other lines on CompleteDone (Neovim's default inserts only up to the first
--- whitespace of a plain-text textEdit).
--- @param item lsp.CompletionItem
--- @return table
local function convert_item(item)
  local text = item.textEdit and item.textEdit.newText or item.insertText or item.label
  return { word = (vim.split(text, '\n', { plain = true })[1]) }
end

--- After accepting one of our items: replace what the menu inserted (from the textEdit
--- start to the cursor) by the item's whole newText, so the buffer ends up exactly as the
--- server's edit says.
--- @param client vim.lsp.Client
--- @param bufnr integer
local function on_complete_done(client, bufnr)
  local done = vim.v.completed_item
  local lsp_data = vim.tbl_get(done or {}, 'user_data', 'nvim', 'lsp')
  if not lsp_data or lsp_data.client_id ~= client.id then
    return
  end
  local item = lsp_data.completion_item
  local edit = item and item.textEdit
  if not edit or not edit.range or edit.newText == done.word then
    return
  end
  local win = vim.api.nvim_get_current_win()
  local row, col = unpack(vim.api.nvim_win_get_cursor(win)) -- row 1-based, col bytes
  local line = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] or ''
  local start = edit.range.start
  if start.line ~= row - 1 then
    return
  end
  local start_col = vim.str_byteindex(line, client.offset_encoding, start.character, false)
  if line:sub(start_col + 1, col) ~= done.word then
    return -- the user changed the inserted text meanwhile: leave it alone
  end
  local lines = vim.split(edit.newText, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, row - 1, start_col, row - 1, col, lines)
  local end_row = row - 1 + #lines - 1
  local end_col = (#lines == 1 and start_col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(win, { end_row + 1, end_col })
end

-- Repair ------------------------------------------------------------------------------

--- @param client vim.lsp.Client
--- @param bufnr integer
--- @param range {start: integer[], ['end']: integer[]}? 0-based {row, col} (col in bytes); nil: cursor
local function code_action_params(client, bufnr, range)
  local params
  if range then
    params = vim.lsp.util.make_given_range_params(
      { range.start[1] + 1, range.start[2] },
      { range['end'][1] + 1, range['end'][2] },
      bufnr,
      client.offset_encoding
    )
  else
    params = vim.lsp.util.make_range_params(0, client.offset_encoding)
    params.range['end'] = params.range.start -- empty: the server picks the block
  end
  params.textDocument = { uri = vim.uri_from_bufnr(bufnr) }
  params.context = { diagnostics = {}, triggerKind = 1 }
  return params
end

--- @param actions any
--- @return lsp.CodeAction?
function M.find_repair_action(actions)
  for _, action in ipairs(type(actions) == 'table' and actions or {}) do
    if action.title == M.REPAIR_TITLE and type(action.command) ~= 'string' then
      return action
    end
  end
end

--- @param edit lsp.WorkspaceEdit?
--- @return integer
function M.count_text_edits(edit)
  if type(edit) ~= 'table' then
    return 0
  end
  local n = 0
  for _, edits in pairs(edit.changes or {}) do
    n = n + #edits
  end
  for _, change in ipairs(edit.documentChanges or {}) do
    n = n + (change.edits and #change.edits or 1)
  end
  return n
end

--- The text edits of `edit` for the buffer (changes or documentChanges).
--- @param edit lsp.WorkspaceEdit
--- @param bufnr integer
--- @return lsp.TextEdit[]
function M.buffer_text_edits(edit, bufnr)
  local uri = vim.uri_from_bufnr(bufnr)
  local out = {}
  for u, edits in pairs(edit.changes or {}) do
    if u == uri then
      vim.list_extend(out, edits)
    end
  end
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.textDocument and change.textDocument.uri == uri then
      vim.list_extend(out, change.edits or {})
    end
  end
  return out
end

--- A unified diff of the buffer before and after `edits` (the buffer is not touched).
--- @param bufnr integer
--- @param edits lsp.TextEdit[]
--- @param encoding string
--- @return string
function M.edit_diff(bufnr, edits, encoding)
  local old = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  local scratch = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(scratch, 0, -1, false, old)
  vim.lsp.util.apply_text_edits(edits, scratch, encoding)
  local new = vim.api.nvim_buf_get_lines(scratch, 0, -1, false)
  vim.api.nvim_buf_delete(scratch, { force = true })
  return vim.diff(table.concat(old, '\n') .. '\n', table.concat(new, '\n') .. '\n', { ctxlen = 2 })
end

M._preview = nil --- @type {win: integer, buf: integer}? the open repair preview

--- Shows `diff` in a floating window; `on_choice(true)` when the user applies it (`a`,
--- <CR>), `on_choice(false)` when they discard it (`q`, <Esc>, or the window closes).
--- @param diff string
--- @param on_choice fun(apply: boolean)
function M.preview_diff(diff, on_choice)
  local lines = vim.split(diff, '\n', { plain = true, trimempty = true })
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].filetype = 'diff'
  vim.bo[buf].modifiable = false
  local width = 20
  for _, l in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(l))
  end
  local win = vim.api.nvim_open_win(buf, true, {
    relative = 'editor',
    row = 1,
    col = 2,
    width = math.min(width + 1, vim.o.columns - 6),
    height = math.max(1, math.min(#lines, vim.o.lines - 6)),
    border = 'rounded',
    title = ' Repair this block: a apply, q discard ',
    style = 'minimal',
  })
  M._preview = { win = win, buf = buf }
  local decided = false
  local function decide(apply)
    if decided then
      return
    end
    decided = true
    M._preview = nil
    if vim.api.nvim_win_is_valid(win) then
      vim.api.nvim_win_close(win, true)
    end
    on_choice(apply)
  end
  for _, key in ipairs({ 'a', '<CR>' }) do
    vim.keymap.set('n', key, function()
      decide(true)
    end, { buffer = buf, nowait = true, desc = 'diffusion-lsp: apply the repair' })
  end
  for _, key in ipairs({ 'q', '<Esc>' }) do
    vim.keymap.set('n', key, function()
      decide(false)
    end, { buffer = buf, nowait = true, desc = 'diffusion-lsp: discard the repair' })
  end
  vim.api.nvim_create_autocmd('WinClosed', {
    pattern = tostring(win),
    once = true,
    callback = function()
      vim.schedule(function()
        decide(false)
      end)
    end,
  })
end

--- @class diffusion_lsp.RepairResult
--- @field status 'applied'|'discarded'|'no-change'|'no-action'|'disabled'|'error'|'no-client'
--- @field edit lsp.WorkspaceEdit?
--- @field message string?

--- Repairs the block at the cursor (or `opts.range`): textDocument/codeAction ->
--- codeAction/resolve (the model runs there) -> a diff preview to accept (unless
--- `opts.preview`, default `config.repair.preview`, is false) -> apply the WorkspaceEdit.
--- @param opts {bufnr: integer?, range: table?, on_done: fun(res: diffusion_lsp.RepairResult)?, quiet: boolean?, preview: boolean?}?
function M.repair(opts)
  opts = opts or {}
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and vim.api.nvim_get_current_buf()
    or opts.bufnr
  local function finish(res)
    if not opts.quiet and res.message then
      local level = (res.status == 'error') and vim.log.levels.ERROR or vim.log.levels.INFO
      vim.notify('diffusion-lsp: ' .. res.message, level)
    end
    if opts.on_done then
      opts.on_done(res)
    end
  end
  local client = M.get_client(bufnr)
  if not client then
    return finish({ status = 'no-client', message = 'the server is not attached to this buffer' })
  end
  local changedtick = vim.b[bufnr].changedtick

  local function apply(action)
    if action.disabled then
      return finish({ status = 'disabled', message = action.disabled.reason })
    end
    if M.count_text_edits(action.edit) == 0 then
      return finish({ status = 'no-change', edit = action.edit }) -- the server says so itself
    end
    local function commit()
      if vim.b[bufnr].changedtick ~= changedtick then
        return finish({ status = 'error', message = 'the buffer changed during the repair' })
      end
      vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
      if action.command then
        client:exec_cmd(action.command, { bufnr = bufnr })
      end
      finish({ status = 'applied', edit = action.edit })
    end
    local preview = opts.preview
    if preview == nil then
      preview = M.config.repair.preview
    end
    if not preview or vim.b[bufnr].changedtick ~= changedtick then
      return commit()
    end
    local diff = M.edit_diff(bufnr, M.buffer_text_edits(action.edit, bufnr), client.offset_encoding)
    M.preview_diff(diff, function(apply)
      if apply then
        return commit()
      end
      finish({ status = 'discarded', edit = action.edit, message = 'repair discarded' })
    end)
  end

  local params = code_action_params(client, bufnr, opts.range)
  client:request('textDocument/codeAction', params, function(err, actions)
    if err then
      return finish({ status = 'error', message = 'repair failed: ' .. err.message })
    end
    local action = M.find_repair_action(actions)
    if not action then
      return finish({
        status = 'no-action',
        message = 'no repair offered here (is enableRepair on and the model loaded?)',
      })
    end
    if action.edit or action.disabled then
      return apply(action)
    end
    client:request('codeAction/resolve', action, function(rerr, resolved)
      if rerr then
        return finish({ status = 'error', message = 'repair failed: ' .. rerr.message })
      end
      apply(resolved or action)
    end, bufnr)
  end, bufnr)
end

-- Status ------------------------------------------------------------------------------

M._status = {} --- @type table<integer, {value: table?, at: number}>

--- Asks the server for `diffusion-lsp.status` (a table) and calls `callback(err, status)`.
--- @param callback fun(err: lsp.ResponseError?, status: table?)
--- @param bufnr integer?
function M.status(callback, bufnr)
  local client = M.get_client(bufnr)
  if not client then
    return callback({ code = -1, message = 'diffusion-lsp is not attached to this buffer' }, nil)
  end
  client:request('workspace/executeCommand', {
    command = M.STATUS_COMMAND,
    arguments = {},
  }, function(err, result)
    if not err then
      M._status[client.id] = { value = result, at = vim.uv.now() }
    end
    callback(err, result)
  end, bufnr)
end

--- Whether the server is working for the buffer: a completion, ghost-text or repair
--- request of ours in flight (the status polls aside). The statusline shows it.
--- @param bufnr integer?
--- @return boolean
function M.busy(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if require('diffusion_lsp.ghost').pending(bufnr) then
    return true
  end
  local client = M.get_client(bufnr)
  for _, req in pairs(client and client.requests or {}) do
    if req.type == 'pending' and req.bufnr == bufnr and req.method ~= 'workspace/executeCommand' then
      return true
    end
  end
  return false
end

--- One line for the statusline: working (a request in flight), model loading/loaded,
--- device, median latency.
--- @param status table?
--- @param busy boolean?
--- @return string
function M.format_status(status, busy)
  if type(status) ~= 'table' then
    return busy and 'diffusion: working, starting' or 'diffusion: starting'
  end
  local parts = busy and { 'working' } or {}
  local model = type(status.model) == 'table' and status.model or nil
  if model == nil and status.loading then
    table.insert(parts, 'loading model')
  elseif model == nil then
    table.insert(parts, 'no model')
  elseif model.device then
    table.insert(parts, model.device)
  end
  local p50 = vim.tbl_get(status, 'completion_latency_ms', 'p50')
  if type(p50) == 'number' then
    table.insert(parts, ('%d ms'):format(math.floor(p50 + 0.5)))
  end
  return 'diffusion: ' .. table.concat(parts, ' ')
end

--- :DiffusionStatus: the statusline text, the torch threads and whether ghost text is on.
--- @param status table?
--- @return string
function M.short_status(status)
  local parts = { M.format_status(status) }
  if type(status) == 'table' and status.torch_threads then
    table.insert(parts, ('%s threads'):format(tostring(status.torch_threads)))
  end
  if type(status) == 'table' and status.model_error then
    table.insert(parts, 'model error: ' .. tostring(status.model_error))
  end
  table.insert(parts, 'ghost text ' .. M.enabled_text())
  return table.concat(parts, ', ')
end

--- For 'statusline': the last known status, refreshed in the background every 5 s.
--- @return string
function M.statusline()
  local client = M.get_client(0)
  if not client then
    return ''
  end
  local cached = M._status[client.id]
  if not cached or vim.uv.now() - cached.at > 5000 then
    M._status[client.id] = { value = cached and cached.value, at = vim.uv.now() }
    M.status(function() end)
  end
  return M.format_status(cached and cached.value, M.busy(0))
end

-- Attach ------------------------------------------------------------------------------

--- @param client vim.lsp.Client
--- @param bufnr integer
function M._on_attach(client, bufnr)
  local cfg = M.config
  -- the statusline's "working" comes and goes with our requests
  vim.api.nvim_create_autocmd('LspRequest', {
    group = vim.api.nvim_create_augroup('diffusion_lsp_busy_' .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function(args)
      if args.data and args.data.client_id == client.id then
        vim.cmd.redrawstatus()
      end
    end,
  })
  if cfg.completion.enable and client:supports_method('textDocument/completion') then
    vim.lsp.completion.enable(true, client.id, bufnr, {
      autotrigger = cfg.completion.autotrigger,
      convert = convert_item,
    })
    vim.api.nvim_create_autocmd('CompleteDone', {
      group = vim.api.nvim_create_augroup('diffusion_lsp_complete_' .. bufnr, { clear = true }),
      buffer = bufnr,
      callback = function()
        on_complete_done(client, bufnr)
      end,
    })
  end
  local inline = cfg.inline_completion.enable
    and client:supports_method('textDocument/inlineCompletion')
  if inline and M.has_inline_completion() then
    vim.lsp.inline_completion.enable(M.is_enabled(), { bufnr = bufnr, client_id = client.id })
    if cfg.keymaps.accept_inline then
      local key = cfg.keymaps.accept_inline
      vim.keymap.set('i', key, function()
        if not vim.lsp.inline_completion.get() then
          return key
        end
      end, { buffer = bufnr, expr = true, desc = 'diffusion-lsp: accept the ghost text' })
    end
  elseif inline then
    ghost.opts.debounce_ms = cfg.inline_completion.debounce_ms or ghost.opts.debounce_ms
    ghost.attach(client, bufnr)
    for how, key in pairs({
      all = cfg.keymaps.accept_inline,
      word = cfg.keymaps.accept_word,
      line = cfg.keymaps.accept_line,
    }) do
      if key then
        vim.keymap.set('i', key, function()
          if ghost.get(bufnr) then
            return ('<Cmd>lua require("diffusion_lsp.ghost").accept(0, %q)<CR>'):format(how)
          end
          return key
        end, {
          buffer = bufnr,
          expr = true,
          desc = 'diffusion-lsp: accept the ghost text (' .. how .. ')',
        })
      end
    end
    for step, key in pairs({ [1] = cfg.keymaps.next_suggestion, [-1] = cfg.keymaps.prev_suggestion }) do
      if key then
        vim.keymap.set('i', key, function()
          ghost.cycle(bufnr, step)
        end, { buffer = bufnr, desc = 'diffusion-lsp: ' .. (step == 1 and 'next' or 'previous') .. ' suggestion' })
      end
    end
  end
  if cfg.keymaps.repair then
    vim.keymap.set('n', cfg.keymaps.repair, function()
      M.repair({ bufnr = bufnr })
    end, { buffer = bufnr, desc = 'diffusion-lsp: repair the block at the cursor' })
    vim.keymap.set('x', cfg.keymaps.repair, function()
      local a, b = vim.fn.line('v'), vim.fn.line('.')
      vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'nx', false)
      M.repair({ bufnr = bufnr, range = M.line_range(bufnr, math.min(a, b), math.max(a, b)) })
    end, { buffer = bufnr, desc = 'diffusion-lsp: repair the selected lines' })
  end
end

--- The range of whole lines l1..l2 (1-based, inclusive) as 0-based {row, col} pairs.
--- @return {start: integer[], ['end']: integer[]}
function M.line_range(bufnr, l1, l2)
  local last = vim.api.nvim_buf_get_lines(bufnr, l2 - 1, l2, false)[1] or ''
  return { start = { l1 - 1, 0 }, ['end'] = { l2 - 1, #last } }
end

-- Commands ----------------------------------------------------------------------------

--- Stops the server and starts a fresh one for every buffer it was attached to.
function M.restart()
  local config = M.lsp_config()
  for _, client in ipairs(vim.lsp.get_clients({ name = M.NAME })) do
    local buffers = vim.tbl_keys(client.attached_buffers)
    client:stop()
    for _, buf in ipairs(buffers) do
      vim.lsp.start(vim.deepcopy(config), {
        bufnr = buf,
        reuse_client = function(c, conf)
          return c.name == conf.name and not c:is_stopped() and c.id ~= client.id
        end,
      })
    end
  end
end

local function create_commands()
  vim.api.nvim_create_user_command('DiffusionRepair', function(cmd)
    local range = nil
    if cmd.range > 0 then
      range = M.line_range(0, cmd.line1, cmd.line2)
    end
    M.repair({ range = range })
  end, { range = true, desc = 'diffusion-lsp: repair the block at the cursor, or the range' })

  vim.api.nvim_create_user_command('DiffusionStatus', function(cmd)
    M.status(function(err, status)
      if err then
        vim.notify('diffusion-lsp: ' .. err.message, vim.log.levels.WARN)
      elseif cmd.bang then
        vim.notify(M.short_status(status) .. '\n' .. vim.inspect(status))
      else
        vim.notify(M.short_status(status))
      end
    end)
  end, { bang = true, desc = 'diffusion-lsp: one line of server status (!: all of it)' })

  vim.api.nvim_create_user_command('DiffusionEnable', function()
    M.enable(true)
  end, { desc = 'diffusion-lsp: ghost text on' })
  vim.api.nvim_create_user_command('DiffusionDisable', function()
    M.enable(false)
  end, { desc = 'diffusion-lsp: ghost text off' })
  vim.api.nvim_create_user_command('DiffusionToggle', function()
    M.enable()
    vim.notify('diffusion-lsp: ghost text ' .. M.enabled_text())
  end, { desc = 'diffusion-lsp: ghost text on/off' })
  vim.api.nvim_create_user_command('DiffusionSnooze', function(cmd)
    local minutes = cmd.args ~= '' and tonumber(cmd.args) or 15
    if not minutes or minutes <= 0 then
      return vim.notify('diffusion-lsp: :DiffusionSnooze [minutes]', vim.log.levels.WARN)
    end
    M.snooze(minutes)
    vim.notify('diffusion-lsp: ghost text ' .. M.enabled_text())
  end, { nargs = '?', desc = 'diffusion-lsp: no ghost text for N minutes (default 15)' })

  vim.api.nvim_create_user_command('DiffusionRestart', function()
    M.restart()
  end, { desc = 'diffusion-lsp: restart the server' })
end

--- @param opts diffusion_lsp.Config?
function M.setup(opts)
  if vim.fn.has('nvim-0.11') == 0 then
    vim.notify('diffusion-lsp needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.cmd then
    M.config.cmd = opts.cmd -- lists are replaced, not merged
  end
  if opts and opts.filetypes then
    M.config.filetypes = opts.filetypes
  end
  local unknown = {}
  for key in pairs(M.config.settings or {}) do
    if not vim.list_contains(M.SERVER_SETTING_KEYS, key) then
      table.insert(unknown, key)
    end
  end
  if #unknown > 0 then
    vim.notify(
      ('diffusion-lsp: unknown settings %s (known: %s)'):format(
        table.concat(unknown, ', '),
        table.concat(M.SERVER_SETTING_KEYS, ', ')
      ),
      vim.log.levels.WARN
    )
  end
  vim.lsp.config[M.NAME] = M.lsp_config() -- assignment replaces (config() would merge lists)
  vim.lsp.enable(M.NAME)
  if not did_setup then
    create_commands()
    did_setup = true
  end
end

return M
