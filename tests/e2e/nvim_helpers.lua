-- Test helpers loaded into the embedded Neovim (dofile) by test_nvim.py. Every wait is
-- vim.wait on a predicate with a deadline; nothing sleeps a fixed time.

E2E = { responses = {} }

local dl -- the plugin module

--- Puts the plugin on the runtime path and calls its setup() like a user config would.
function E2E.setup(plugin_dir, cmd, settings)
  vim.opt.rtp:prepend(plugin_dir)
  vim.cmd('filetype on')
  vim.g.mapleader = ' '
  vim.o.completeopt = 'menuone,noinsert' -- the menu shows even for one item; <C-y> accepts
  dl = require('diffusion_lsp')
  -- the repair tests check the edit as applied; the diff preview has its own test
  dl.setup({ cmd = cmd, settings = settings, repair = { preview = false } })
  return {
    enabled = vim.lsp.is_enabled(dl.NAME),
    commands = {
      repair = vim.fn.exists(':DiffusionRepair') == 2,
      status = vim.fn.exists(':DiffusionStatus') == 2,
      restart = vim.fn.exists(':DiffusionRestart') == 2,
    },
  }
end

E2E.sent = {} -- method -> request ids, in order
E2E.cancelled = {} -- request ids the client cancelled
E2E.hold = false -- true: inlineCompletion answers wait in E2E.held until released
E2E.held = {} -- request id -> function delivering the answer

--- Records every request and answer, per method (the real handlers still run), and every
--- $/cancelRequest.
local function record(client)
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    local id
    local ok, rid = request(self, method, params, function(err, result, ctx, config)
      E2E.responses[method] = E2E.responses[method] or {}
      table.insert(E2E.responses[method], { err = err, result = result, id = id })
      local function deliver()
        if handler then
          return handler(err, result, ctx, config)
        end
      end
      if method == 'textDocument/inlineCompletion' and E2E.hold then
        E2E.held[id] = deliver
        return
      end
      return deliver()
    end, bufnr)
    id = rid
    E2E.sent[method] = E2E.sent[method] or {}
    table.insert(E2E.sent[method], rid)
    return ok, rid
  end
  local cancel = client.cancel_request
  client.cancel_request = function(self, rid)
    table.insert(E2E.cancelled, rid)
    return cancel(self, rid)
  end
end

--- Opens a file and waits until the plugin's client is attached and initialized.
function E2E.open(path, timeout)
  vim.cmd.edit(vim.fn.fnameescape(path))
  local t0 = vim.uv.now()
  local ok = vim.wait(timeout, function()
    local c = dl.get_client(0)
    return c ~= nil and c.initialized == true
  end, 10)
  local client = dl.get_client(0)
  if client then
    record(client)
  end
  local caps = client and client.server_capabilities or {}
  return {
    attached = ok,
    ms = vim.uv.now() - t0,
    filetype = vim.bo.filetype,
    completion = caps.completionProvider ~= nil,
    inline = caps.inlineCompletionProvider ~= nil,
    code_action = caps.codeActionProvider ~= nil,
    omnifunc = vim.bo.omnifunc,
    repair_map = vim.fn.maparg('<leader>dr', 'n') ~= '',
    repair_map_visual = vim.fn.maparg('<leader>dr', 'x') ~= '',
  }
end

--- Polls diffusion-lsp.status (one request at a time) until the model is loaded or failed.
function E2E.wait_model(timeout)
  local status, pending = nil, false
  local ok = vim.wait(timeout, function()
    if type(status) == 'table' and not status.loading then
      return true
    end
    if not pending then
      pending = true
      dl.status(function(_, s)
        status, pending = s, false
      end)
    end
    return false
  end, 10)
  return { ok = ok, status = status, line = dl.format_status(status) }
end

--- Waits until `method` got at least `n` answers; returns the last one.
function E2E.wait_response(method, n, timeout)
  local ok = vim.wait(timeout, function()
    return #(E2E.responses[method] or {}) >= n
  end, 10)
  local all = E2E.responses[method] or {}
  return { ok = ok, count = #all, last = all[#all] }
end

--- Starts LSP completion at the cursor (insert mode) and waits for the menu.
function E2E.complete(timeout)
  local before = #(E2E.responses['textDocument/completion'] or {})
  vim.lsp.completion.get()
  local ok = vim.wait(timeout, function()
    return vim.fn.pumvisible() == 1 or #(E2E.responses['textDocument/completion'] or {}) > before
  end, 10)
  -- the menu opens right after the answer, in the same callback
  local info = vim.fn.complete_info({ 'items', 'selected', 'pum_visible' })
  return {
    ok = ok,
    mode = vim.api.nvim_get_mode().mode,
    pum_visible = info.pum_visible == 1,
    words = vim.tbl_map(function(i)
      return i.word
    end, info.items or {}),
    selected = info.selected,
  }
end

function E2E.wait_tick(tick, timeout)
  return vim.wait(timeout, function()
    return vim.b.changedtick ~= tick
  end, 10)
end

function E2E.state()
  return {
    lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),
    cursor = vim.api.nvim_win_get_cursor(0),
    mode = vim.api.nvim_get_mode().mode,
    tick = vim.b.changedtick,
    offset_encoding = (dl.get_client(0) or {}).offset_encoding,
  }
end

--- Runs :checkhealth diffusion_lsp and returns the report lines.
function E2E.checkhealth()
  vim.cmd('checkhealth diffusion_lsp')
  local lines = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  vim.cmd('bwipeout!')
  return lines
end

--- Repairs through the plugin's Lua API and waits for the outcome.
function E2E.repair(range, timeout)
  local result
  dl.repair({
    range = range,
    quiet = true,
    on_done = function(r)
      result = r
    end,
  })
  local ok = vim.wait(timeout, function()
    return result ~= nil
  end, 10)
  return { ok = ok, result = result, state = E2E.state() }
end

--- Offers a completion result through Neovim's own LSP conversion (which applies the
--- plugin's `convert`) and opens the menu, as vim.lsp.completion does with an answer.
--- Used for a multi-line item, which the tiny random model does not reliably produce.
function E2E.offer(result, start_col)
  local client = dl.get_client(0)
  local line = vim.api.nvim_get_current_line()
  local col = vim.api.nvim_win_get_cursor(0)[2]
  local prefix = line:sub(start_col + 1, col)
  local items = vim.lsp.completion._lsp_to_complete_items(result, prefix, client.id)
  vim.fn.complete(start_col + 1, items)
  return {
    mode = vim.api.nvim_get_mode().mode,
    words = vim.tbl_map(function(i)
      return i.word
    end, items),
  }
end

--- Like a user's config: the plugin on the runtime path, then `setup({})` with nothing in
--- it (the default command from PATH, the default model). Records every vim.notify.
function E2E.setup_empty(plugin_dir)
  vim.opt.rtp:prepend(plugin_dir)
  vim.cmd('filetype on')
  E2E.notes = {}
  local notify = vim.notify
  vim.notify = function(msg, level, o)
    table.insert(E2E.notes, { msg = tostring(msg), level = level or vim.log.levels.INFO })
    return notify(msg, level, o)
  end
  vim.lsp.log.set_level('info') -- the server's info lines reach the LSP log
  dl = require('diffusion_lsp')
  dl.setup({})
  return { enabled = vim.lsp.is_enabled(dl.NAME), cmd = dl.server_cmd() }
end

--- What the user saw: the message history (showMessage lands there), the notifications,
--- and whether Neovim waits for a key (a Press-ENTER prompt).
function E2E.messages()
  return {
    history = vim.api.nvim_exec2('messages', { output = true }).output,
    notes = E2E.notes or {},
    blocking = vim.api.nvim_get_mode().blocking,
  }
end

--- :DiffusionRestart, then waits for a new, initialized client attached to the buffer.
function E2E.restart(timeout)
  local old = dl.get_client(0)
  vim.cmd('DiffusionRestart')
  local ok = vim.wait(timeout, function()
    local c = dl.get_client(0)
    return c ~= nil and c ~= old and c.initialized == true
  end, 10)
  local client = dl.get_client(0)
  if client and client ~= old then
    record(client)
  end
  return { ok = ok, new = client ~= nil and client ~= old }
end

--- The lines of the LSP log (vim.lsp.log), where window/logMessage and stderr both go.
function E2E.lsp_log()
  local ok, lines = pcall(vim.fn.readfile, vim.lsp.log.get_filename())
  return ok and lines or {}
end

-- Ghost text (the plugin's own, Neovim 0.11) ---------------------------------------------

--- The ghost-text extmarks of the current buffer: position, inline text, lines below.
function E2E.ghost()
  local g = require('diffusion_lsp.ghost')
  local out = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, g.ns, 0, -1, { details = true })) do
    local d = m[4]
    local below = {}
    for _, chunks in ipairs(d.virt_lines or {}) do
      table.insert(below, table.concat(vim.tbl_map(function(c)
        return c[1]
      end, chunks)))
    end
    table.insert(out, {
      row = m[2],
      col = m[3],
      text = d.virt_text and d.virt_text[1][1] or '',
      pos = d.virt_text_pos,
      below = below,
    })
  end
  return out
end

--- Waits until ghost text is drawn at (row, col) (0-based, bytes) or `cond` says so.
function E2E.wait_ghost(row, col, timeout)
  local g = require('diffusion_lsp.ghost')
  local ok = vim.wait(timeout, function()
    local shown = g.get(0)
    return shown ~= nil and shown.row == row and shown.col == col
  end, 10)
  return { ok = ok, marks = E2E.ghost(), shown = g.get(0), state = E2E.state() }
end

--- Waits until no ghost text is drawn.
function E2E.wait_no_ghost(timeout)
  local ok = vim.wait(timeout, function()
    return #E2E.ghost() == 0
  end, 10)
  return { ok = ok, state = E2E.state() }
end

function E2E.wait_sent(method, n, timeout)
  local ok = vim.wait(timeout, function()
    return #(E2E.sent[method] or {}) >= n
  end, 10)
  return { ok = ok, ids = E2E.sent[method] or {} }
end

function E2E.wait_cancelled(id, timeout)
  return vim.wait(timeout, function()
    return vim.list_contains(E2E.cancelled, id)
  end, 10)
end

--- Delivers the held answer of request `id` (nil: all of them, and stops holding).
function E2E.release(id)
  if id == nil then
    E2E.hold = false
  end
  local ids = id and { id } or vim.tbl_keys(E2E.held)
  local n = 0
  for _, rid in ipairs(ids) do
    local deliver = E2E.held[rid]
    if deliver then
      E2E.held[rid] = nil
      deliver()
      n = n + 1
    end
  end
  return n
end

function E2E.ghost_state()
  local g = require('diffusion_lsp.ghost')
  local s = g.state[vim.api.nvim_get_current_buf()]
  return {
    enabled = dl.is_enabled(),
    timer_active = s ~= nil and s.timer:is_active(),
    pending = s ~= nil and s.pending ~= nil,
    shown = s ~= nil and s.shown ~= nil,
  }
end
