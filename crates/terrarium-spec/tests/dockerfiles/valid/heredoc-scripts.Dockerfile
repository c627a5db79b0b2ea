# syntax=docker/dockerfile:1
FROM ubuntu:24.04

RUN <<EOF
set -e
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv
# lines that look like instructions are part of the script
FROM this is not an instruction
COPY neither is this
rm -rf /var/lib/apt/lists/*
EOF

RUN <<-EOT bash
	set -euo pipefail
	echo "tabs are stripped, the terminator may be indented with tabs"
	EOT

RUN python3 <<'PY'
import sys
print("quoted delimiter, no expansion of $HOME", sys.version)
PY

RUN cat > /etc/app.env << "ENVFILE"
APP_MODE=production
ENVFILE

COPY <<a.txt <<b.txt /dest/
first file
a.txt
second file
b.txt

COPY <<EOF /etc/motd
Welcome to the build.
EOF

ONBUILD RUN <<EOF
echo "a heredoc in an ONBUILD trigger"
EOF

CMD ["bash"]
