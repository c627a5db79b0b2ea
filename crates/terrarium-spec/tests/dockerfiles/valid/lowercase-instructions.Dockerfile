from alpine:3.20 as base
run apk add --no-cache curl ca-certificates
Copy . /app
workdir /app
Env APP_HOME=/app
entrypoint ["/bin/sh", "-c"]
cmd ["./run.sh"]

From base As final
User nobody
