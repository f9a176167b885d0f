-- hello, pipelined: each connection sends DEPTH requests in one write and waits for all the answers.
-- wrk counts every response as a request.
local depth = 16

init = function(args)
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format("GET", wrk.path)
  end
  pipelined = table.concat(batch)
end

request = function()
  return pipelined
end
