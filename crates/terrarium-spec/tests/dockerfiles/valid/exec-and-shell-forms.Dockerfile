FROM ubuntu:22.04
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN ["/bin/bash", "-c", "echo exec form"]
RUN echo shell form | tee /tmp/out
ADD ["config files/app.conf", "/etc/app/"]
ADD --chmod=0755 https://example.com/tool.sh /usr/local/bin/tool
COPY ["entrypoint.sh", "/usr/local/bin/"]
VOLUME ["/data"]
VOLUME /var/log /var/cache
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["--help"]
CMD echo "a later CMD in shell form wins"
