-- A POST whose body the app echoes back; its size in bytes is the script argument (wrk ... -- 1024).
init = function(args)
  local size = tonumber(args[1] or "1024")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.body = string.rep("a", size)
end
