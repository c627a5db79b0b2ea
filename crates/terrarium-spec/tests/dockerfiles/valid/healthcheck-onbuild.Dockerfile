FROM nginx:1.27-alpine
MAINTAINER Jane Doe <jane@example.com>
LABEL maintainer="Jane Doe <jane@example.com>" \
      version="1.0"
ONBUILD COPY . /usr/share/nginx/html
ONBUILD RUN ["nginx", "-t"]
onbuild run echo "lower-case trigger"
EXPOSE 80/tcp 443
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://localhost/ || exit 1
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

FROM nginx:1.27-alpine AS no-health
HEALTHCHECK NONE
HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]
