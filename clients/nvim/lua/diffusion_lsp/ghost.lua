--- Ghost text drawn by the plugin (Neovim 0.11, which has no vim.lsp.inline_completion):
--- as you type in insert mode, a debounced `textDocument/inlineCompletion` request; the
--- answer is shown as virtual text (extmarks) at the cursor. The next key cancels the request
--- in flight and hides the text; keys accept all of it, the next word or the next line; Esc
--- (leaving insert mode) dismisses it.

local M = {}

M.ns = vim.api.nvim_create_namespace('diffusion_lsp_ghost')
M.HL = 'DiffusionGhostText'

--- @class diffusion_lsp.GhostShown
--- @field row integer 0-based
--- @field col integer 0-based, bytes
--- @field tick integer the buffer's changedtick when it was drawn
--- @field text string what accepting everything inserts

--- @class diffusion_lsp.GhostState
--- @field client vim.lsp.Client
--- @field timer uv.uv_timer_t
--- @field seq integer bumped by every new request and cancel: older answers are dropped
--- @field pending integer? id of the request in flight
--- @field shown diffusion_lsp.GhostShown?

--- @type table<integer, diffusion_lsp.GhostState>
M.state = {}

--- debounce_ms: the wait after the last key; enabled: false while disabled or snoozed.
M.opts = {
  debounce_ms = 150,
  enabled = function()
    return true
  end,
}

--- @param text string
--- @return string[]
local function split(text)
  return vim.split(text, '\n', { plain = true })
end

--- @param bufnr integer
--- @return diffusion_lsp.GhostShown?
function M.get(bufnr)
  local s = M.state[bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr]
  return s and s.shown
end

--- Whether a ghost-text request of the buffer is in flight.
--- @param bufnr integer
--- @return boolean
function M.pending(bufnr)
  local s = M.state[bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr]
  return s ~= nil and s.pending ~= nil
end

--- Removes the ghost text of the buffer.
--- @param bufnr integer
function M.clear(bufnr)
  local s = M.state[bufnr]
  if s then
    s.shown = nil
  end
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Cancels the request in flight (and a pending debounce); its answer will be ignored.
--- @param bufnr integer
function M.cancel(bufnr)
  local s = M.state[bufnr]
  if not s then
    return
  end
  s.seq = s.seq + 1
  s.timer:stop()
  if s.pending then
    s.client:cancel_request(s.pending)
    s.pending = nil
  end
end

--- Draws `text` at (row, col): the first line inline after the cursor, the others below.
--- @param bufnr integer
--- @param row integer
--- @param col integer
--- @param text string
function M.show(bufnr, row, col, text)
  M.clear(bufnr)
  local s = M.state[bufnr]
  if not s or text == '' then
    return
  end
  local lines = split(text)
  local mark = { hl_mode = 'combine', priority = 200 }
  if lines[1] ~= '' then
    mark.virt_text = { { lines[1], M.HL } }
    mark.virt_text_pos = 'inline'
  end
  if #lines > 1 then
    mark.virt_lines = {}
    for i = 2, #lines do
      table.insert(mark.virt_lines, { { lines[i], M.HL } })
    end
  end
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, col, mark)
  s.shown = { row = row, col = col, tick = vim.b[bufnr].changedtick, text = text }
  s.items, s.index = nil, nil
end

--- Shows the first of several suggestions; `cycle` steps through the others.
--- @param bufnr integer
--- @param row integer
--- @param col integer
--- @param texts string[]
function M.show_items(bufnr, row, col, texts)
  bufnr = bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr
  local s = M.state[bufnr]
  if not s or #texts == 0 then
    return
  end
  M.show(bufnr, row, col, texts[1])
  s.items, s.index = texts, 1
end

--- Shows the next (`step` 1) or previous (-1) suggestion at the cursor. Without ghost text
--- there, asks the server as an explicit request (trigger kind Invoked), which answers with
--- its alternatives (the line and the block). Returns what is shown now, if anything.
--- @param bufnr integer
--- @param step integer
--- @return string?
function M.cycle(bufnr, step)
  bufnr = bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr
  local s = M.state[bufnr]
  if not s then
    return nil
  end
  local shown = s.shown
  local cur = vim.api.nvim_win_get_cursor(0)
  local here = shown and vim.b[bufnr].changedtick == shown.tick and cur[1] - 1 == shown.row
    and cur[2] == shown.col
  if not here or not s.items or #s.items < 2 then
    if not here then
      M.request(bufnr, true)
    end
    return shown and here and shown.text or nil
  end
  local items, index = s.items, (s.index - 1 + step) % #s.items + 1
  M.show(bufnr, shown.row, shown.col, items[index])
  s.items, s.index = items, index
  return items[index]
end

--- The text an inline-completion item adds at the cursor (nil: it does not apply here).
--- An item whose range starts before the cursor repeats what was typed since: that part is
--- not shown again.
--- @param item table lsp.InlineCompletionItem
--- @param line string the cursor line
--- @param row integer 0-based
--- @param col integer 0-based, bytes
--- @param encoding string the client's offset encoding
--- @return string?
function M.item_text(item, line, row, col, encoding)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value -- a snippet: shown and inserted as plain text
  end
  if type(text) ~= 'string' then
    return nil
  end
  local range = item.range
  if range and range ~= vim.NIL then
    if range.start.line ~= row then
      return nil
    end
    local start_col = vim.str_byteindex(line, encoding, range.start.character, false)
    if start_col > col then
      return nil
    end
    local typed = line:sub(start_col + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
  end
  return text
end

--- Asks the server for ghost text at the cursor of the current window (insert mode only).
--- @param bufnr integer
function M.request(bufnr, invoked)
  local s = M.state[bufnr]
  if
    not s
    or s.client:is_stopped()
    or not M.opts.enabled()
    or vim.api.nvim_get_current_buf() ~= bufnr
    or vim.api.nvim_get_mode().mode ~= 'i'
    or vim.fn.pumvisible() == 1
  then
    return
  end
  M.cancel(bufnr)
  local seq = s.seq
  local client = s.client
  local win = vim.api.nvim_get_current_win()
  local row, col = unpack(vim.api.nvim_win_get_cursor(win))
  row = row - 1
  local tick = vim.b[bufnr].changedtick
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  -- Invoked (1): the user asked (cycling), the server answers with its alternatives too
  params.context = { triggerKind = invoked and 1 or 2 } -- else Automatic
  local ok, id = client:request('textDocument/inlineCompletion', params, function(err, result)
    if s.seq ~= seq then
      return -- cancelled, or a newer request was sent
    end
    s.pending = nil
    if err or type(result) ~= 'table' then
      return
    end
    if
      not vim.api.nvim_buf_is_valid(bufnr)
      or vim.b[bufnr].changedtick ~= tick
      or vim.api.nvim_get_current_buf() ~= bufnr
      or vim.api.nvim_get_mode().mode ~= 'i'
    then
      return
    end
    local cur = vim.api.nvim_win_get_cursor(0)
    if cur[1] - 1 ~= row or cur[2] ~= col then
      return
    end
    local items = result.items or result
    if type(items) ~= 'table' then
      return
    end
    local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    local texts = {}
    for _, item in ipairs(items) do
      local text = type(item) == 'table' and M.item_text(item, line, row, col, client.offset_encoding)
      if text and text:match('%S') then
        table.insert(texts, text)
      end
    end
    M.show_items(bufnr, row, col, texts)
  end, bufnr)
  if ok then
    s.pending = id
  end
end

--- After a key: hide the ghost text, cancel its request, ask again after the debounce.
--- Nothing happens when the buffer and cursor are where the ghost text was drawn (our own
--- partial accept, or a cursor event without a move).
--- @param bufnr integer
function M.on_key(bufnr)
  local s = M.state[bufnr]
  if not s then
    return
  end
  local shown = s.shown
  if shown and vim.b[bufnr].changedtick == shown.tick then
    local cur = vim.api.nvim_win_get_cursor(0)
    if cur[1] - 1 == shown.row and cur[2] == shown.col then
      return
    end
  end
  M.cancel(bufnr)
  M.clear(bufnr)
  if not M.opts.enabled() then
    return
  end
  local seq = s.seq
  s.timer:start(
    M.opts.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if s.seq == seq then
        M.request(bufnr)
      end
    end)
  )
end

--- The part of `text` that accepting `how` inserts.
--- @param text string
--- @param how 'all'|'word'|'line'
--- @return string
function M.piece(text, how)
  if how == 'line' then
    -- the rest of the current line; at its end: the line break and the next line
    local first = text:match('^[^\n]*')
    if first ~= '' then
      return first
    end
    return text:match('^\n[^\n]*') or text
  elseif how == 'word' then
    return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text:match('^%s+') or text
  end
  return text
end

--- Inserts the ghost text (all of it, its next word or its next line) at the cursor; the
--- rest stays shown. Returns false when there is no ghost text at the cursor.
--- @param bufnr integer
--- @param how 'all'|'word'|'line'|nil
--- @return boolean
function M.accept(bufnr, how)
  bufnr = bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr
  local s = M.state[bufnr]
  local shown = s and s.shown
  if not shown or vim.b[bufnr].changedtick ~= shown.tick then
    return false
  end
  local win = vim.api.nvim_get_current_win()
  local cur = vim.api.nvim_win_get_cursor(win)
  if cur[1] - 1 ~= shown.row or cur[2] ~= shown.col then
    return false
  end
  local piece = M.piece(shown.text, how or 'all')
  local rest = shown.text:sub(#piece + 1)
  local lines = split(piece)
  M.cancel(bufnr)
  M.clear(bufnr)
  vim.api.nvim_buf_set_text(bufnr, shown.row, shown.col, shown.row, shown.col, lines)
  local row = shown.row + #lines - 1
  local col = (#lines == 1 and shown.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(win, { row + 1, col })
  if rest:match('%S') then
    M.show(bufnr, row, col, rest) -- its tick and position make on_key keep it
  end
  return true
end

--- Starts ghost text for `client` in `bufnr`.
--- @param client vim.lsp.Client
--- @param bufnr integer
function M.attach(client, bufnr)
  M.detach(bufnr)
  vim.api.nvim_set_hl(0, M.HL, { link = 'Comment', default = true })
  M.state[bufnr] = { client = client, timer = assert(vim.uv.new_timer()), seq = 0 }
  local group = vim.api.nvim_create_augroup('diffusion_lsp_ghost_' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.on_key(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave', 'TextChangedP' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.cancel(bufnr)
      M.clear(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    buffer = bufnr,
    callback = function(args)
      if args.data and args.data.client_id == client.id then
        M.detach(bufnr)
      end
    end,
  })
end

--- Stops ghost text in `bufnr`.
--- @param bufnr integer
function M.detach(bufnr)
  local s = M.state[bufnr]
  if not s then
    return
  end
  M.cancel(bufnr)
  M.clear(bufnr)
  s.timer:close()
  M.state[bufnr] = nil
  pcall(vim.api.nvim_del_augroup_by_name, 'diffusion_lsp_ghost_' .. bufnr)
end

--- Hides the ghost text and cancels its requests in every buffer (disable, snooze).
function M.clear_all()
  for bufnr in pairs(M.state) do
    M.cancel(bufnr)
    M.clear(bufnr)
  end
end

return M
