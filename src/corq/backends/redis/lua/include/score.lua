--[[
score: where a job waits among the ready jobs (or the suspects) of its queue.

ready_score(priority_max, priority, seq): (priority_max - priority) * 2^44 + seq as an exact
integer string, so higher priority comes first, then FIFO. Scores stay below 2^53, where
doubles are exact, for priorities within the range and 2^44 jobs.
]]
local SCORE_BAND = 17592186044416 -- 2^44

local function ready_score(priority_max, priority, seq)
  return string.format('%d', (priority_max - priority) * SCORE_BAND + seq)
end
